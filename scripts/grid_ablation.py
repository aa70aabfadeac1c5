"""Grid ablation of replay-buffer size x target-update interval: the same as `dqn-tune ablate`."""

import sys

from dqn_tune.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["ablate", *sys.argv[1:]]))
