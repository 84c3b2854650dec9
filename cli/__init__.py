"""The ``levered`` command line (cyclopts). Imports stay light: no litestar, asyncpg or numba
at module scope, so ``levered --help`` is instant."""
