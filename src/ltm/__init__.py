"""Latent Thought Models: a reproducible research pipeline."""

__version__ = "0.1.0"
