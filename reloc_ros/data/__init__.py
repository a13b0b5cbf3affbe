"""Data: the 7-Scenes reader, the synthetic 7-Scenes-format generator and the pair sampler."""
