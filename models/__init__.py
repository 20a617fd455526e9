"""Reconstructors, metrics and scorers for frames seen through sparse sampled pixels."""
