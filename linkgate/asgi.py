"""The ASGI entry point for uvicorn workers: ``uvicorn linkgate.asgi:app``."""

from linkgate.app import create_app

app = create_app()
