"""Datasets in the Microsoft 7-Scenes layout: the reader and its byte-exact writers.

Offline only: training, the synthetic generator and the tools read scenes with it; the
node never imports it.
"""
