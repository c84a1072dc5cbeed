"""gunicorn's entry point: ``gunicorn proxy.wsgi:app``."""

from proxy.app import create_app

app = create_app()
