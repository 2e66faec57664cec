"""The REST API (FastAPI, server-sent events) and its async Python client."""
