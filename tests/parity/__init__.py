"""Parity tests against the official optimizely-sdk 5.7.0 (the oracle)."""
