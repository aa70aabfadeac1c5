"""Grid ablation over any hyperparameters (default: replay-buffer size x target-update interval): the same as
`dqn-tune ablate`, e.g. `python scripts/grid_ablation.py --grid n_steps=1,3,5 --grid dueling=false,true`."""

import sys

from dqn_tune.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["ablate", *sys.argv[1:]]))
