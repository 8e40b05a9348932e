"""Alembic's environment and migration scripts for the library (see ../migrations.py)."""
