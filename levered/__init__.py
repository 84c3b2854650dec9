"""Levered: self-hostable bandit optimization of product surfaces."""

__version__ = "0.1.0"
