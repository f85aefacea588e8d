"""Database access: engines per dialect, the ORM base, Alembic migrations."""
