"""The tiny run budget the CLI tests give `train`, `tune` and `ablate`: 300 steps of a 16-unit network, one-episode
evaluations. Each run takes a fraction of a second."""

TINY_RUN = [
    "--timesteps",
    "300",
    "--learning-starts",
    "100",
    "--batch-size",
    "32",
    "--hidden-sizes",
    "16",
    "--eval-freq",
    "100",
    "--eval-curve-episodes",
    "1",
    "--eval-episodes",
    "1",
]
