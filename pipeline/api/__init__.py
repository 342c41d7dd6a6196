"""HTTP APIs (FastAPI)."""
