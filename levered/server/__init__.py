"""The HTTP edge: Litestar app, thin controllers, error envelope."""
