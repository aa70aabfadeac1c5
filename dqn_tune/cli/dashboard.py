"""`dqn-tune dashboard`: optuna-dashboard on the study storage, with the trials' learning-curve artifacts."""

from __future__ import annotations

import argparse

from dqn_tune.results.dashboard import DEFAULT_HOST, DEFAULT_PORT, start_dashboard
from dqn_tune.tuning.storage import DEFAULT_STORAGE

HELP = "open optuna-dashboard on the study storage (trial curves, attributes, learning-curve PNGs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune dashboard`."""
    parser.add_argument("--storage", default=None, metavar="URL",
                        help=f"SQLAlchemy URL of the study storage (default: {DEFAULT_STORAGE})")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default: {DEFAULT_HOST}, this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on, 0 for any free port (default: {DEFAULT_PORT})")


def run(args: argparse.Namespace) -> int:
    """Start the server, print its URL, serve until Ctrl-C."""
    server = start_dashboard(args.storage, host=args.host, port=args.port)
    print(f"optuna-dashboard for {args.storage or DEFAULT_STORAGE} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("dashboard stopped")
    finally:
        server.server_close()
    return 0
