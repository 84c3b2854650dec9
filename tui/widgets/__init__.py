"""Reusable dashboard widgets (each with its DEFAULT_CSS)."""
