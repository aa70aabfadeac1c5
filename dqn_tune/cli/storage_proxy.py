"""`dqn-tune storage-proxy`: serve a study database to many workers through one gRPC server (runner/proxy.py)."""

from __future__ import annotations

import argparse
import ipaddress
import socket
from typing import Any

from dqn_tune.cli.arguments import add_storage_retry_flag, bounded_int, text
from dqn_tune.errors import ConfigError, shown
from dqn_tune.runner.defaults import DEFAULT_STORAGE

USES_STORAGE = True
HELP = (
    "serve the study storage to many workers through one gRPC server: workers use --storage grpc://HOST:PORT and "
    "the database sees this one process's few connections"
)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 13000
"""Optuna's default proxy port."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune storage-proxy`."""
    parser.add_argument(
        "--host",
        type=text,
        default=DEFAULT_HOST,
        help=f"address to listen on (default: {DEFAULT_HOST}, this machine only); 0.0.0.0 lets every "
        "machine that reaches this port read, change and delete every study in the storage, "
        "unauthenticated and unencrypted: use it on a private network only",
    )
    parser.add_argument(
        "--port",
        type=bounded_int(0, 65535),
        default=DEFAULT_PORT,
        help=f"port to listen on, 0 for any free port (default: {DEFAULT_PORT})",
    )
    add_storage_retry_flag(parser)


def exposure(host: str) -> str | None:
    """A warning line when `host` is not a loopback address (None for 127.0.0.1, ::1, localhost)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name
        loopback = False
    if loopback:
        return None
    return (
        f"warning: listening on {host}: every machine that reaches this port can read, change and delete every "
        "study in this storage (no authentication, no encryption); keep the port on a private network or tunnel "
        "it over SSH"
    )


def serve_until_stopped(server: Any) -> None:
    """Wait while the gRPC server serves, waking every second so that Ctrl-C and SIGTERM (KeyboardInterrupt) end it."""
    while server.wait_for_termination(timeout=1.0):  # True: still running after the timeout
        pass


def run(args: argparse.Namespace) -> int:
    """Open the database, serve it until Ctrl-C or SIGTERM."""
    from dqn_tune.runner.retry import RetryPolicy  # optuna and SQLAlchemy load when the command runs, not for --help
    from dqn_tune.runner.storage import PROXY_POOL_SIZE, open_storage, proxy_address, proxy_module, public_url

    try:
        args.host.encode("idna")  # what a resolver does with a host name: '.', '\x80' or a 64-character label cannot be
    except UnicodeError:
        raise ConfigError(
            f"--host = {shown(args.host)} is invalid: expected a host name or IP address such as "
            f"{DEFAULT_HOST} or 0.0.0.0",
            field="host",
        ) from None
    if args.storage is not None and proxy_address(args.storage) is not None:
        raise ConfigError(
            f"--storage {public_url(args.storage)!r} is a storage proxy; give the database URL it "
            "should serve (e.g. postgresql+psycopg2://user@host/db)",
            field="storage",
        )
    storage = open_storage(args.storage, retry=RetryPolicy(args.storage_retry_timeout), pool_size=PROXY_POOL_SIZE)
    proxy = proxy_module()
    server, port, locks = proxy.serve(storage, host=args.host, port=args.port)
    if (warning := exposure(args.host)) is not None:
        print(warning, flush=True)
    reachable = socket.getfqdn() if args.host in ("0.0.0.0", "::") else args.host  # what other machines dial
    print(
        f"storage proxy for {public_url(args.storage or DEFAULT_STORAGE)} at grpc://{proxy.target(args.host, port)}: "
        f"workers use --storage grpc://{proxy.target(reachable, port)} (Ctrl-C to stop)",
        flush=True,
    )
    try:
        serve_until_stopped(server)
    except KeyboardInterrupt:
        print("storage proxy stopped", flush=True)
    finally:
        server.stop(grace=2).wait()
        locks.close()
        storage.close()
    return 0
