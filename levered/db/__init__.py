"""Database access: the embedded PostgreSQL launcher, the pool, migrations and typed queries."""
