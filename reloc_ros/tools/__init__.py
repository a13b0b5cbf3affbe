"""Offline tools: evaluation, benchmarks, the demo, and the rosbag commands (``bag/``)."""
