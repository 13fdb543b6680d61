"""Benchmarks, run side by side with the official optimizely-sdk (``make bench``)."""
