"""`python -m dqn_tune`: the same as the `dqn-tune` console script."""

from dqn_tune.cli import program

program()
