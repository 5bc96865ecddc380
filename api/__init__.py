"""The REST service (FastAPI). Never imports torch; talks to workers only through `jobs`."""
