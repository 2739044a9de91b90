"""Celery wiring: the app, its queues, and thin tasks calling into the domain."""
