"""The WSGI app of the API benchmark only (scripts/bench/api.py): credits' own app,
built by its factory from the environment exactly as ``credits.wsgi`` builds it,
plus ``GET /bench/bare``, a route that touches no database, as the baseline of what
gunicorn and Flask cost on their own, and ``GET /bench/worker``, the answering
worker's pid, by which the load side spreads its connections evenly over the
workers. The product never mounts either route::

    gunicorn -c python:credits.gunicorn_conf --pythonpath scripts/bench api_bench_app:app
"""

from __future__ import annotations

import os

from flask import Flask

from credits.app import create_app

BARE_BODY = {"ok": True}


def bench_app() -> Flask:
    app = create_app()

    def bare() -> dict[str, bool]:
        return BARE_BODY

    def worker() -> dict[str, int]:
        return {"pid": os.getpid()}

    app.add_url_rule("/bench/bare", "bench_bare", bare, methods=["GET"])
    app.add_url_rule("/bench/worker", "bench_worker", worker, methods=["GET"])
    return app


app = bench_app()
