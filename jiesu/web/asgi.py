"""The ASGI entry point uvicorn imports: `jiesu.web.asgi:app`."""

from jiesu.web.app import create_app

app = create_app()
