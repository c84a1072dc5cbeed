"""gunicorn's entry point: ``gunicorn proxy.wsgi:app``."""

from gunicorn.errors import AppImportError

from proxy.app import create_app
from proxy.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # gunicorn prints this one line and stops (exit 4, "App failed to load") rather than a
    # worker's traceback: the proxy does not start without its configuration
    raise AppImportError(f"fhirplug: {exc}") from None
