"""Numerics: variant spaces, posteriors and the Thompson sampler (numpy + numba only)."""
