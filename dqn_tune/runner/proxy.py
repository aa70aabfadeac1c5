"""The storage proxy: many worker processes on one database through one gRPC server (Optuna's), with the study
lock and heartbeats served beside it.

Optuna's proxy (`run_grpc_proxy_server` / `GrpcStorageProxy`) carries the storage API only: no lock and no
heartbeats, which the study runner needs (one trial per worker, exact totals, dead workers' trials failed and
retried). `serve` runs Optuna's service and a small one of its own on the same port:
- Acquire / Renew / Release: the study lock as a lease. The server takes the database's own lock (advisory lock
  or SQLite file lock) for the holder, so processes using the database directly are excluded too; a holder that
  dies stops renewing and its lease ends after LEASE_S. Clients poll for it, first come first served, each as
  often as its place in the queue deserves (the next in line every POLL_S, the tenth ten times less often): nothing
  waits inside the server, so no number of waiting clients can use up its threads, and the lock passes to the
  next in line within about POLL_S.
- Heartbeat / StaleTrials: Optuna's heartbeat table, read and written by the server (one clock for all).
Requests and answers are JSON (gRPC's generic handlers): no generated code for four small messages.

A database error that passes (restart, too many clients) reaches clients as UNAVAILABLE with its cause, which
they retry as they would the database's own; anything else as INTERNAL with its cause.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

# gRPC's core logs its errors (e.g. a port it cannot bind) to stderr itself; this module reports them in its own
# one-line messages. Read when grpc is first imported; a value set by the user is kept.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
import grpc

from dqn_tune.errors import ConfigError, shown
from dqn_tune.runner.coordination import Coordinator, DatabaseCoordinator
from dqn_tune.runner.optuna_internals import add_storage_service, grpc_client
from dqn_tune.runner.retry import (
    RetryPolicy,
    TransientError,
    cause,
    is_transient,
    pause,
    retried,
)
from dqn_tune.runner.shared_storage import SharedStorage

LOGGER = logging.getLogger(__name__)

SERVICE = "dqn_tune.runner.Coordination"
THREADS = 16
"""Threads of the proxy server: each call holds one for a few milliseconds (no call waits inside the server)."""
LEASE_S = 10.0
"""A study lock held through the proxy is lost this long after its holder stopped renewing it (died or hung)."""
RENEW_EVERY_S = LEASE_S / 4
POLL_S = 0.02
"""How often the next in line for a study lock asks for it; the k-th waiting asks every (k + 1) * POLL_S ..."""
POLL_MAX_S = 0.5
"""... and at least this often."""
FORGET_S = 5.0
"""A client waiting for a lock that has not asked again for this long has left the queue (it died)."""
READY_TIMEOUT_S = 5.0
"""Seconds a client waits for the proxy to answer a new connection before trying again."""
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_reconnect_backoff_ms", 2000)]
"""Optuna's channel option, and reconnection tried at least every 2 s (gRPC's default backs off to 120 s, so a
proxy back after a restart could go unnoticed for minutes)."""


# ----------------------------------------------------------------------------------------------------- the server


@dataclass
class _Lease:
    holder: str
    expires: float
    held: ExitStack


class LeaseLocks:
    """Study locks lent to proxy clients; each held lease also holds the database's lock of that name."""

    def __init__(self, coordinator: DatabaseCoordinator) -> None:
        self._coordinator = coordinator
        self._leases: dict[str, _Lease] = {}
        self._waiting: dict[str, dict[str, float]] = {}
        """Per lock, its waiting holders in order of arrival, with when each last asked."""
        self._mutex = threading.Lock()
        self._stopped = threading.Event()
        threading.Thread(target=self._expire_forever, name="dqn-tune-lease-expiry", daemon=True).start()

    def acquire(self, name: str, holder: str, lease_s: float) -> int:
        """Lend lock `name` to `holder` for `lease_s` (or extend its lease): -1; else how many wait before `holder`
        (0: it is next), which keeps its place in the queue as long as it keeps asking."""
        with self._mutex:
            self._expire()
            now = time.monotonic()
            lease = self._leases.get(name)
            if lease is not None and lease.holder == holder:
                lease.expires = now + lease_s
                return -1
            queue = self._waiting.setdefault(name, {})
            queue[holder] = now  # a holder asking again keeps its place
            for gone in [waiter for waiter, asked in queue.items() if now - asked > FORGET_S]:
                del queue[gone]
            ahead = list(queue).index(holder)
            if lease is not None or ahead:
                return ahead
            held = self._coordinator.try_lock(name)
            if held is None:  # a process using the database directly holds it
                return 0
            del queue[holder]
            self._leases[name] = _Lease(holder, now + lease_s, held)
            return -1

    def renew(self, name: str, holder: str, lease_s: float) -> bool:
        """Extend `holder`'s lease of `name`; False if it has lost it."""
        with self._mutex:
            lease = self._leases.get(name)
            if lease is None or lease.holder != holder:
                return False
            lease.expires = time.monotonic() + lease_s
            return True

    def release(self, name: str, holder: str) -> None:
        """End `holder`'s lease of `name` (nothing if it has lost it)."""
        with self._mutex:
            lease = self._leases.get(name)
            if lease is not None and lease.holder == holder:
                del self._leases[name]
                lease.held.close()

    def close(self) -> None:
        """Release every lease (the server stops)."""
        self._stopped.set()
        with self._mutex:
            for lease in self._leases.values():
                lease.held.close()
            self._leases.clear()

    def _expire(self) -> None:
        now = time.monotonic()
        for name in [name for name, lease in self._leases.items() if lease.expires < now]:
            LOGGER.warning("storage proxy: the lease of lock %r ended (its holder stopped renewing it)", name)
            self._leases.pop(name).held.close()

    def _expire_forever(self) -> None:
        """Release expired leases every second, so that processes using the database directly are not held up."""
        while not self._stopped.wait(1.0):
            with self._mutex:
                self._expire()


class _DatabaseErrorsAsStatus(grpc.ServerInterceptor):
    """A database error raised by a call becomes UNAVAILABLE (transient) or INTERNAL, with its cause as details."""

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        behaviour = handler.unary_unary

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return behaviour(request, context)
            except Exception as exc:
                # the service aborted the call with its own status (e.g. NOT_FOUND); code(): grpc's, not in its stubs
                if context.code() is not None:  # type: ignore[attr-defined]
                    raise
                context.abort(
                    grpc.StatusCode.UNAVAILABLE if is_transient(exc) else grpc.StatusCode.INTERNAL, cause(exc)
                )

        return grpc.unary_unary_rpc_method_handler(
            guarded, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


def _json_method(call: Callable[..., Any]) -> grpc.RpcMethodHandler:
    """`call(**request)` as a gRPC method; its answer travels as {"answer": ...} (gRPC takes a None message for a
    failure to deserialize)."""
    return grpc.unary_unary_rpc_method_handler(
        lambda request, _context: {"answer": call(**request)},
        request_deserializer=json.loads,
        response_serializer=lambda answer: json.dumps(answer).encode(),
    )


def serve(storage: SharedStorage, *, host: str, port: int) -> tuple[grpc.Server, int, LeaseLocks]:
    """Start the proxy of `storage` (opened on the database) on host:port; returns the server, the port it listens
    on (port 0 picks a free one) and its locks (close them after stopping the server). ConfigError when the address
    cannot be bound."""
    coordinator = storage.coordinator
    if not isinstance(coordinator, DatabaseCoordinator):
        raise ConfigError(
            "the storage proxy serves a database: give --storage a database URL, not grpc://", field="storage"
        )
    locks = LeaseLocks(coordinator)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="dqn-tune-proxy"),
        interceptors=[_DatabaseErrorsAsStatus()],
    )
    add_storage_service(server, storage.backend)
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Acquire": _json_method(locks.acquire),
                    "Renew": _json_method(locks.renew),
                    "Release": _json_method(locks.release),
                    "Heartbeat": _json_method(coordinator.beat),
                    "StaleTrials": _json_method(
                        lambda study_id, grace_s: sorted(coordinator.stale_trials_within(study_id, grace_s).items())
                    ),
                },
            )
        ]
    )
    try:
        bound = server.add_insecure_port(target(host, port))
    except RuntimeError:  # gRPC says "Failed to bind", not why
        bound = 0
    if not bound:
        locks.close()
        where = target(host, port) if host.isprintable() else f"{shown(host)}:{port}"  # one line, whatever the host
        raise ConfigError(
            f"cannot listen on {where}: {_bind_error(host, port)}; choose another --port or --host", field="port"
        )
    server.start()
    return server, bound, locks


def target(host: str, port: int) -> str:
    """host:port as gRPC takes it ([host]:port for an IPv6 address)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind_error(host: str, port: int) -> str:
    """Why host:port cannot be listened on, as the operating system says it (gRPC does not)."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, protocol) as probe:
            probe.bind(address)
    except socket.gaierror as exc:
        return f"unknown host ({exc.strerror})"
    except OSError as exc:
        return exc.strerror or str(exc)
    return "gRPC could not bind it"


# ----------------------------------------------------------------------------------------------------- the client


class ProxyCoordinator(Coordinator):
    """The study lock and heartbeats of a storage proxy, through its Coordination service."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        retry: RetryPolicy,
        heartbeat_interval_s: int | None,
        grace_period_s: int,
        where: str,
    ) -> None:
        super().__init__(heartbeat_interval_s=heartbeat_interval_s, grace_period_s=grace_period_s, where=where)
        self._channel = grpc.insecure_channel(target(host, port), options=CHANNEL_OPTIONS)
        self._retry = retry

    def _call(self, method: str, **request: Any) -> Any:
        call: grpc.UnaryUnaryMultiCallable[dict[str, Any], Any] = self._channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=lambda r: json.dumps(r).encode(),
            response_deserializer=json.loads,
        )
        return call(request)["answer"]

    def _retried(self, method: str, **request: Any) -> Any:
        return retried(lambda: self._call(method, **request), policy=self._retry, where=self.where)

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        holder = uuid.uuid4().hex
        while (ahead := self._retried("Acquire", name=name, holder=holder, lease_s=LEASE_S)) >= 0:
            pause(min((ahead + 1) * POLL_S, POLL_MAX_S))
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(name, holder, stop), name="dqn-tune-lease", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            try:
                self._call("Release", name=name, holder=holder)
            except grpc.RpcError as exc:  # unreachable now: the lease ends by itself
                if not is_transient(exc):
                    raise

    def _renew(self, name: str, holder: str, stop: threading.Event) -> None:
        while not stop.wait(RENEW_EVERY_S):
            try:
                if not self._call("Renew", name=name, holder=holder, lease_s=LEASE_S):
                    LOGGER.warning(
                        "storage %s: the lease of lock %r was lost (this process stalled for over %gs)",
                        self.where,
                        name,
                        LEASE_S,
                    )
                    return
            except grpc.RpcError as exc:
                LOGGER.warning("storage %s: the lease of lock %r was not renewed (%s)", self.where, name, cause(exc))

    def beat(self, trial_id: int) -> None:
        self._call("Heartbeat", trial_id=trial_id)

    def stale_trials_within(self, study_id: int, grace_s: float) -> dict[int, str]:
        return {
            trial_id: reason for trial_id, reason in self._retried("StaleTrials", study_id=study_id, grace_s=grace_s)
        }

    def close(self) -> None:
        self._channel.close()


def open_proxy(
    host: str,
    port: int,
    *,
    url: str,
    where: str,
    retry: RetryPolicy,
    heartbeat_interval_s: int | None,
    grace_period_s: int,
) -> SharedStorage:
    """The storage behind the proxy at host:port, once it answers (transient failures retried under `retry`)."""
    client = grpc_client(host, port, target(host, port), CHANNEL_OPTIONS)

    def ready() -> None:
        try:
            client.wait_server_ready(timeout=READY_TIMEOUT_S)
        except ConnectionError:
            raise TransientError(f"no storage proxy answers at {host}:{port} within {READY_TIMEOUT_S:g}s") from None

    try:
        retried(ready, policy=retry, where=where)
    except BaseException:
        client.close()
        raise
    coordinator = ProxyCoordinator(
        host, port, retry=retry, heartbeat_interval_s=heartbeat_interval_s, grace_period_s=grace_period_s, where=where
    )
    return SharedStorage(client, coordinator, url=url, retry=retry, on_close=client.close)  # type: ignore[abstract]
