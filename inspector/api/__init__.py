"""The HTTP API (FastAPI): the only package that imports it."""
