"""`dqn-tune dashboard`: optuna-dashboard on the study storage, with the trials' learning-curve artifacts."""

from __future__ import annotations

import argparse

from dqn_tune.cli.arguments import add_artifact_dir_flag, add_storage_retry_flag, text
from dqn_tune.errors import StorageError
from dqn_tune.results.defaults import DASHBOARD_HOST, DASHBOARD_PORT
from dqn_tune.runner.defaults import DEFAULT_STORAGE

USES_STORAGE = True
HELP = "open optuna-dashboard on the study storage (trial curves, attributes, learning-curve PNGs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune dashboard`."""
    parser.add_argument(
        "storage_url",
        nargs="?",
        type=text,
        default=None,
        metavar="URL",
        help="the storage, as optuna-dashboard takes it (the same as --storage URL)",
    )
    parser.add_argument(
        "--host",
        type=text,
        default=DASHBOARD_HOST,
        help=f"address to listen on (default: {DASHBOARD_HOST}, this machine only)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DASHBOARD_PORT,
        help=f"port to listen on, 0 for any free port (default: {DASHBOARD_PORT})",
    )
    parser.add_argument(
        "--allow-writes",
        action="store_true",
        help="let the dashboard create, rename and delete studies, edit notes, tell trials and "
        "upload or delete artifacts (default: read-only, every other request gets 403)",
    )
    add_artifact_dir_flag(parser, "the trials' learning-curve PNGs to serve")
    add_storage_retry_flag(parser)


def run(args: argparse.Namespace) -> int:
    """Start the server, print its URL, serve until Ctrl-C."""
    from dqn_tune.results.dashboard import start_dashboard  # optuna loads when a command runs, not for --help
    from dqn_tune.runner.storage import public_url

    if args.storage_url is not None:
        if args.storage is not None and args.storage != args.storage_url:
            raise StorageError(
                f"two storages given, {public_url(args.storage_url)!r} and --storage "
                f"{public_url(args.storage)!r}; give one"
            )
        args.storage = args.storage_url
    server = start_dashboard(
        args.storage,
        host=args.host,
        port=args.port,
        allow_writes=args.allow_writes,
        artifact_dir=args.artifact_dir,
        storage_retry_timeout_s=args.storage_retry_timeout,
    )
    print(
        f"optuna-dashboard for {public_url(args.storage or DEFAULT_STORAGE)} at {server.url} (Ctrl-C to stop)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("dashboard stopped")
    finally:
        server.server_close()
    return 0
