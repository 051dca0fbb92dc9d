"""The WSGI application of the production web tier, for gunicorn::

    gunicorn -c python:credits.gunicorn_conf credits.wsgi:app

Each gunicorn worker imports this module after the fork (the configuration does
not preload the app), so every worker builds its own database engine and a
reload (SIGHUP) loads the code anew. The jobs loop does not run here: in
production Celery beat sends that work to the workers.
"""

from __future__ import annotations

from credits.app import create_app

app = create_app()
