"""Retrain a study's best trial and save the final agent: the same as `dqn-tune retrain`."""

import sys

from dqn_tune.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["retrain", *sys.argv[1:]]))
