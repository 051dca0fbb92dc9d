"""gunicorn's configuration for the production web tier, read from the settings.

    gunicorn -c python:credits.gunicorn_conf credits.wsgi:app

It binds ``CREDITS_HOST:CREDITS_PORT`` and runs ``CREDITS_WEB_WORKERS``
processes of ``CREDITS_WEB_THREADS`` threads each (the gthread worker: requests
wait on the database, not the CPU). A request running longer than
``CREDITS_WEB_TIMEOUT_SECONDS`` gets its worker restarted; on SIGHUP or SIGTERM
a worker has ``CREDITS_WEB_GRACEFUL_TIMEOUT_SECONDS`` to finish its requests.
SIGHUP reloads gracefully: new workers start with the code on disk before the
old ones stop. The access log and the error log go to standard output and
standard error, where the container runtime collects them.

Invalid settings stop gunicorn before it forks, with the one-line message.

Each worker freezes the objects of its loaded app out of the garbage collector's
reach (``gc.freeze``), so that a full collection does not pause its requests.

Metrics: the workers keep their Prometheus values in files under
``PROMETHEUS_MULTIPROC_DIR`` (a fresh folder under the temporary directory
when unset, removed at exit; an operator's folder is emptied at start), so
``/metrics`` from any worker sums them all; a stopped worker's live gauges are
dropped. Each worker logs through credits/observability/logs.py
(``CREDITS_LOG_FORMAT``).
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from credits.settings import Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)  # noqa: T201 - before any logger exists
        raise SystemExit(2) from None


def _bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_loaded = _settings()

bind = [_bind_address(_loaded.host, _loaded.port)]
workers = _loaded.web_workers
threads = _loaded.web_threads
worker_class = "gthread"
timeout = _loaded.web_timeout_seconds
graceful_timeout = _loaded.web_graceful_timeout_seconds
keepalive = 5
# Each worker builds the app after the fork: no engine or connection crosses a fork,
# and SIGHUP's new workers import the code anew.
preload_app = False
accesslog = "-"
errorlog = "-"
# The default combined format, with the request's duration in microseconds (%(D)s).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s'
proc_name = f"credits-web-{_loaded.instance_name}"
# Workers' heartbeat files: memory rather than a container's possibly read-only disk.
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108 - not a temp file of ours
# gunicorn 24+ opens a control socket under $HOME, which a container's user may lack
# and two servers on one host would share; signals (HUP, TERM) are the interface here.
# Older versions ignore the unknown name.
control_socket_disable = True


# Set before any worker imports prometheus_client, which reads it at import.
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_own_metrics_dir = _MULTIPROC_ENV not in os.environ
if _own_metrics_dir:
    os.environ[_MULTIPROC_ENV] = tempfile.mkdtemp(prefix="credits-metrics-")


def on_starting(_server: Any) -> None:
    """Empties the metrics folder: values of an earlier run must not be summed in."""
    directory = Path(os.environ[_MULTIPROC_ENV])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def post_fork(_server: Any, _worker: Any) -> None:
    from credits.observability.logs import configure_logging  # noqa: PLC0415 - in the worker

    configure_logging(_loaded)


def post_worker_init(worker: Any) -> None:
    """Starts the worker's memory of API token identities, then moves everything the
    app built at start-up out of the collector's reach.

    A worker holds a few hundred thousand long-lived objects (modules, the ORM's
    mappings, pydantic's validators); a full garbage collection walks them all and
    stops the worker's threads for about 100 ms, which shows as the p99 of every
    route. Frozen, they are never walked again; what requests allocate is collected
    as before.
    """
    from credits.api.auth import keep_token_identities  # noqa: PLC0415 - in the worker

    keep_token_identities(worker.wsgi)
    gc.freeze()


def child_exit(_server: Any, worker: Any) -> None:
    from credits.observability.metrics import mark_process_dead  # noqa: PLC0415 - master only

    mark_process_dead(worker.pid)


def on_exit(_server: Any) -> None:
    if _own_metrics_dir:
        shutil.rmtree(os.environ[_MULTIPROC_ENV], ignore_errors=True)
