"""Celery glue: the app, its tasks, and the signal handlers that load each agent's model."""
