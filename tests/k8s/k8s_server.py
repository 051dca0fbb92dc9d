"""HTTP front of the Kubernetes API emulator: a Werkzeug WSGI app and its serving thread.

Run by hand: ``python tests/k8s/k8s_server.py --port 8001`` prints the URL and serves
until Ctrl-C (with two GPU nodes and the virtual clock following wall time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k8s_apiserver import Route
from k8s_store import KINDS, ApiError, ResourceKind, bad_request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from k8s_emulator import K8sEmulator

_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
_GROUPS = ("batch", "networking.k8s.io")  # the API groups served besides the core one
VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-credits-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2030-01-01T00:00:00Z",
    "goVersion": "go1.22.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _resource_list(group: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for kind in KINDS.values():
        if kind.group != group:
            continue
        resources.append(
            {
                "name": kind.plural,
                "singularName": kind.kind.lower(),
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": _VERBS,
                "shortNames": list(kind.short_names),
            }
        )
        for sub in kind.subresources:
            verbs = ["get"] if sub == "log" else ["get", "patch", "update"]
            resources.append(
                {
                    "name": f"{kind.plural}/{sub}",
                    "singularName": "",
                    "namespaced": kind.namespaced,
                    "kind": kind.kind if sub != "log" else "Pod",
                    "verbs": verbs,
                }
            )
    group_version = f"{group}/v1" if group else "v1"
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def _discovery(path: str, host: str) -> dict[str, Any] | None:
    if path == "/version":
        return VERSION
    if path == "/api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
        }
    if path == "/apis":
        groups = []
        for group in _GROUPS:
            version = {"groupVersion": f"{group}/v1", "version": "v1"}
            groups.append({"name": group, "versions": [version], "preferredVersion": version})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    if path == "/api/v1":
        return _resource_list("")
    for group in _GROUPS:
        if path == f"/apis/{group}/v1":
            return _resource_list(group)
    return None


def parse_route(path: str) -> Route | None:
    """``/api/v1/namespaces/ns/pods/name/log`` → Route; None when no resource matches."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis" and parts[1] in _GROUPS and parts[2] == "v1":
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    kind: ResourceKind | None = KINDS.get(rest[0])
    if kind is None or kind.group != group:
        return None
    if namespace is not None and not kind.namespaced:
        return None
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    if sub is not None and sub not in kind.subresources:
        return None
    return Route(kind, namespace, name, sub)


def _verb(method: str, route: Route, params: dict[str, str]) -> str:
    if method == "GET":
        if route.name is not None:
            return "get"
        return "watch" if params.get("watch", "").lower() in ("true", "1") else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def _error(err: ApiError) -> Response:
    return _json(err.status(), err.code, err.headers)


def _preamble(
    emulator: K8sEmulator, request: Request, path: str, params: dict[str, str]
) -> tuple[Route, str, Any]:
    """Route, verb and JSON body of a request, after the injected stalls and errors."""
    route = parse_route(path)
    if route is None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    verb = _verb(request.method, route, params)
    if (stall := emulator.faults.take_stall(verb, route.resource, route.ns)) > 0:
        time.sleep(stall)
    if (injected := emulator.faults.take_error(verb, route.resource, route.ns)) is not None:
        raise injected
    if (route.name is None) != (verb in ("list", "watch", "create")):
        raise ApiError(405, "MethodNotAllowed", f"{verb} is not allowed on {path}")
    body: Any = None
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and request.get_data():
        try:
            body = json.loads(request.get_data())
        except ValueError as exc:
            raise bad_request(f"the body is not JSON: {exc}") from exc
    return route, verb, body


def make_app(emulator: K8sEmulator) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
    api = emulator.api

    def dispatch(request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        params = dict(request.args.items())
        if request.method == "GET" and (found := _discovery(path, request.host)) is not None:
            return _json(found)
        route, verb, body = _preamble(emulator, request, path, params)
        if verb == "watch":
            fault = emulator.faults.take_watch(route.resource, route.ns)
            sock = request.environ.get("werkzeug.socket")

            def drop() -> None:
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

            stream = api.watch(route, params, fault, drop)
            return Response(
                stream,
                content_type="application/json",
                direct_passthrough=True,
                headers={"Cache-Control": "no-cache, private"},
            )
        if route.sub == "log":
            if verb != "get":
                raise ApiError(405, "MethodNotAllowed", "pods/log is read only")
            text = api.log(route, params, emulator.cluster.pod_log)
            return Response(text, content_type="text/plain")
        handlers: dict[str, Callable[[], Any]] = {
            "get": lambda: api.get(route),
            "list": lambda: api.list_objects(route, params),
            "create": lambda: api.create(route, body),
            "update": lambda: api.replace(route, body),
            "patch": lambda: api.patch(route, body, request.content_type or ""),
            "delete": lambda: api.delete(route, params, body),
        }
        if verb not in handlers:
            raise ApiError(405, "MethodNotAllowed", f"method {request.method} not allowed")
        result = handlers[verb]()
        return _json(result, 201 if verb == "create" else 200)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = dispatch(request)
        except ApiError as err:
            response = _error(err)
        except Exception as exc:  # a bug in the emulator: answer it as the API would
            emulator.errors.append(exc)
            response = _error(ApiError(500, "InternalError", f"emulator error: {exc!r}"))
        emulator.requests.append((request.method, request.full_path.rstrip("?")))
        return response(environ, start_response)

    return app


class _QuietHandler(WSGIRequestHandler):
    """HTTP/1.1 (chunked watch streams, keep-alive) without a log line per request."""

    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class ServerThread:
    """A threaded Werkzeug server on 127.0.0.1 and an ephemeral port, in a daemon thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=_QuietHandler
        )
        self.host = host
        self.port = self.server.server_port
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from k8s_emulator import K8sEmulator  # noqa: PLC0415 - the module imports this one

    parser = argparse.ArgumentParser(description="Serve the Kubernetes API emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--nodes", type=int, default=2, help="GPU nodes to add")
    parser.add_argument("--gpus", type=int, default=8, help="nvidia.com/gpu per node")
    parser.add_argument("--speed", type=float, default=1.0, help="virtual seconds per second")
    args = parser.parse_args(argv)
    emulator = K8sEmulator(auto_tick=True)
    for i in range(args.nodes):
        emulator.add_node(f"gpu-node-{i}", gpus=args.gpus)
    emulator.start(host=args.host, port=args.port)
    print(f"Kubernetes API emulator serving at {emulator.url}", flush=True)  # noqa: T201
    try:
        while True:
            time.sleep(1.0)
            emulator.advance(args.speed)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
