"""The API fixtures of tests/api (a real app on a migrated SQLite database), shared here."""

from tests.api.conftest import app_factory, migrated_sqlite_template, service

__all__ = ["app_factory", "migrated_sqlite_template", "service"]
