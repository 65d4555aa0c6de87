"""The ASGI entry point for uvicorn workers: ``uvicorn linkgate.asgi:app``."""

from linkgate.app import create_app
from linkgate.logs import configure_logging
from linkgate.settings import get_settings

_settings = get_settings()
# Each ``--workers`` process imports this module: the same logging in every one of them.
configure_logging(_settings.log_format, _settings.log_level)
app = create_app(_settings)
