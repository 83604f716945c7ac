"""Celery wiring: the app, its tasks and the beat schedule. Thin by design."""
