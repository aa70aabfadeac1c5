"""optuna-dashboard on a study storage and its artifact store (the trials' learning-curve PNGs).

The app is optuna-dashboard's own (`optuna_dashboard.wsgi`), served by a threaded wsgiref server as
the `optuna-dashboard` command does; binding here (instead of inside `run_server`) lets a busy port
be reported before anything is printed, and `port=0` pick a free port.
"""

from __future__ import annotations

import socketserver
from typing import cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna_dashboard

from dqn_tune.errors import ConfigError
from dqn_tune.results.existing_storage import open_existing_storage
from dqn_tune.tuning.artifacts import make_artifact_store

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class DashboardServer(socketserver.ThreadingMixIn, WSGIServer):
    """A wsgiref server handling each request in its own thread (the dashboard polls several APIs at once)."""

    daemon_threads = True

    @property
    def url(self) -> str:
        """The address the server listens on."""
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/dashboard"


class QuietHandler(WSGIRequestHandler):
    """Request handler that does not log every poll of the dashboard to stderr."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - wsgiref's signature
        pass


def start_dashboard(storage_url: str | None, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> DashboardServer:
    """Open the storage and bind the dashboard to host:port; call `serve_forever()` on the result.

    Raises StorageError for a storage that cannot be opened and ConfigError when the address
    cannot be bound (port in use, unknown host, privileged port).
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port = {port} is invalid: expected 0-65535 (0 picks a free port)", field="port")
    storage = open_existing_storage(storage_url)
    app = optuna_dashboard.wsgi(storage, artifact_store=make_artifact_store(storage_url))
    try:
        server = make_server(host, port, app, server_class=DashboardServer, handler_class=QuietHandler)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}; choose another --port or --host",
                          field="port") from None
    return cast(DashboardServer, server)
