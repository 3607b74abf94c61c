"""Test-generating agent fleet: the library (everything that is not Celery glue)."""

__version__ = "0.1.0"
