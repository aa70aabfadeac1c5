"""`dqn-tune storage-proxy`: serve a study database to many workers through one gRPC server (runner/proxy.py)."""

from __future__ import annotations

import argparse
import ipaddress

from dqn_tune.cli.arguments import add_storage_retry_flag, bounded_int, text
from dqn_tune.errors import ConfigError
from dqn_tune.runner.retry import RetryPolicy
from dqn_tune.runner.storage import (
    DEFAULT_STORAGE,
    PROXY_POOL_SIZE,
    open_storage,
    proxy_address,
    proxy_module,
    public_url,
)

USES_STORAGE = True
HELP = ("serve the study storage to many workers through one gRPC server: workers use --storage grpc://HOST:PORT and "
        "the database sees this one process's few connections")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 13000
"""Optuna's default proxy port."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune storage-proxy`."""
    parser.add_argument("--host", type=text, default=DEFAULT_HOST,
                        help=f"address to listen on (default: {DEFAULT_HOST}, this machine only); 0.0.0.0 lets every "
                             "machine that reaches this port read, change and delete every study in the storage, "
                             "unauthenticated and unencrypted: use it on a private network only")
    parser.add_argument("--port", type=bounded_int(0, 65535), default=DEFAULT_PORT,
                        help=f"port to listen on, 0 for any free port (default: {DEFAULT_PORT})")
    add_storage_retry_flag(parser)


def exposure(host: str) -> str | None:
    """A warning line when `host` is not a loopback address (None for 127.0.0.1, ::1, localhost)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name
        loopback = False
    if loopback:
        return None
    return (f"warning: listening on {host}: every machine that reaches this port can read, change and delete every "
            "study in this storage (no authentication, no encryption); keep the port on a private network or tunnel "
            "it over SSH")


def run(args: argparse.Namespace) -> int:
    """Open the database, serve it until Ctrl-C or SIGTERM."""
    if args.storage is not None and proxy_address(args.storage) is not None:
        raise ConfigError(f"--storage {public_url(args.storage)!r} is a storage proxy; give the database URL it "
                          "should serve (e.g. postgresql+psycopg2://user@host/db)", field="storage")
    storage = open_storage(args.storage, retry=RetryPolicy(args.storage_retry_timeout), pool_size=PROXY_POOL_SIZE)
    server, port, locks = proxy_module().serve(storage, host=args.host, port=args.port)
    host = f"[{args.host}]" if ":" in args.host else args.host
    if (warning := exposure(args.host)) is not None:
        print(warning, flush=True)
    print(f"storage proxy for {public_url(args.storage or DEFAULT_STORAGE)} at grpc://{host}:{port}: workers use "
          f"--storage grpc://{host}:{port} (Ctrl-C to stop)", flush=True)
    try:
        while server.wait_for_termination(timeout=1.0):  # True while it runs: wakes for signals
            pass
    except KeyboardInterrupt:
        print("storage proxy stopped", flush=True)
    finally:
        server.stop(grace=2).wait()
        locks.close()
        storage.close()
    return 0
