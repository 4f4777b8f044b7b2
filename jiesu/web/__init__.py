"""The web layer: the FastAPI application, its error answers and shared dependencies."""
