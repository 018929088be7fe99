"""The coordinator's web dashboard (FastAPI app, static page, no build step)."""
