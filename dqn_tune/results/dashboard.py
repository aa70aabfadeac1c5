"""optuna-dashboard on a study storage and its artifact store (the trials' learning-curve PNGs).

The app is optuna-dashboard's own (`optuna_dashboard.wsgi`), served by a threaded wsgiref server as
the `optuna-dashboard` command does; binding here (instead of inside `run_server`) lets a busy port
be reported before anything is printed, and `port=0` pick a free port.

optuna-dashboard can create, rename and delete studies, edit notes, tell trials and upload or delete
artifacts, and has no read-only mode; `read_only` wraps its app so that only GET and HEAD reach it,
unless the caller allows writes.
"""

from __future__ import annotations

import json
import socketserver
from collections.abc import Iterable
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna_dashboard
from optuna.storages import BaseStorage

from dqn_tune.errors import ConfigError, shown
from dqn_tune.results.defaults import DASHBOARD_HOST, DASHBOARD_PORT
from dqn_tune.runner.defaults import RETRY_TIMEOUT_S
from dqn_tune.runner.retry import RetryPolicy
from dqn_tune.runner.storage import DEFAULT_STORAGE, open_existing_storage, public_url
from dqn_tune.tuning import records
from dqn_tune.tuning.artifacts import chosen_artifact_dir, make_artifact_store

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

READ_METHODS = frozenset({"GET", "HEAD"})
"""The only methods a read-only dashboard passes on (OPTIONS too is refused: the dashboard's page never sends it)."""
READ_ONLY_REASON = (
    "this dashboard is read-only: it answers GET and HEAD only, so studies, trials, notes and "
    "artifacts cannot be changed; restart it with 'dqn-tune dashboard --allow-writes' to allow that"
)


class DashboardServer(socketserver.ThreadingMixIn, WSGIServer):
    """A wsgiref server handling each request in its own thread (the dashboard polls several APIs at once)."""

    daemon_threads = True

    @property
    def url(self) -> str:
        """The address the server listens on."""
        host, port = self.server_address[:2]
        if not isinstance(host, str):  # bytes only where the server was given a bytes host
            host = bytes(host).decode()
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/dashboard"


class QuietHandler(WSGIRequestHandler):
    """Request handler that does not log every poll of the dashboard to stderr."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def read_only(app: WSGIApplication) -> WSGIApplication:
    """`app` behind a guard that answers 403 to every method but GET and HEAD, before `app` sees the request.

    The body is JSON with a `reason`, which the dashboard's page shows in most of its error messages.
    """
    body = json.dumps({"reason": READ_ONLY_REASON}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if str(environ.get("REQUEST_METHOD", "GET")).upper() in READ_METHODS:
            return app(environ, start_response)
        start_response("403 Forbidden", list(headers))
        return [body]

    return guarded


def dashboard_artifact_dir(storage: BaseStorage, storage_url: str | None, given: str | None) -> str:
    """The artifact directory to serve: `given`, else the one the storage's studies recorded, else the default.

    ConfigError when the studies recorded several (one dashboard serves one directory)."""
    if given is None:
        stored = records.storage_artifact_dirs(storage)
        if len(stored) > 1:
            raise ConfigError(
                f"the studies in {public_url(storage_url or DEFAULT_STORAGE)} keep artifacts in "
                f"{len(stored)} directories ({', '.join(map(shown, stored))}); choose one with "
                "--artifact-dir",
                field="artifact_dir",
            )
        given = stored[0] if stored else None
    return chosen_artifact_dir(given, None, storage_url)


def start_dashboard(
    storage_url: str | None,
    *,
    host: str = DASHBOARD_HOST,
    port: int = DASHBOARD_PORT,
    allow_writes: bool = False,
    artifact_dir: str | None = None,
    storage_retry_timeout_s: float = RETRY_TIMEOUT_S,
) -> DashboardServer:
    """Open the storage and bind the dashboard to host:port; call `serve_forever()` on the result.

    The dashboard only reads unless `allow_writes` (see `read_only`). Raises StorageError for a storage
    that cannot be opened and ConfigError when the address cannot be bound (port in use, unknown host,
    privileged port).
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port = {port} is invalid: expected 0-65535 (0 picks a free port)", field="port")
    try:
        host.encode("idna")  # what socket does with a host name; '.', '\x80' or a 64-character label cannot be
    except UnicodeError:
        raise ConfigError(
            f"--host = {shown(host)} is invalid: expected a host name or IP address such as "
            f"{DASHBOARD_HOST} or localhost",
            field="host",
        ) from None
    storage = open_existing_storage(storage_url, retry=RetryPolicy(storage_retry_timeout_s))
    app = optuna_dashboard.wsgi(
        storage,
        artifact_store=make_artifact_store(storage_url, dashboard_artifact_dir(storage, storage_url, artifact_dir)),
    )
    if not allow_writes:
        app = read_only(app)
    try:
        server = make_server(host, port, app, server_class=DashboardServer, handler_class=QuietHandler)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = f"{host}:{port}" if host.isprintable() else f"{shown(host)}:{port}"  # one line, whatever the host
        raise ConfigError(
            f"cannot listen on {where}: {reason}; choose another --port or --host", field="port"
        ) from None
    return server
