"""The tiny run budgets the CLI tests give `train`, `tune` and `ablate`: 300 steps of a 16-unit network, one-episode
evaluations. Each run takes a fraction of a second."""

TINY_MODEL = ["--learning-starts", "100", "--batch-size", "32", "--hidden-sizes", "16"]
"""A 16-unit network learning from step 100 on minibatches of 32, for runs of any length."""
TINY_TRAINING = ["--timesteps", "300", *TINY_MODEL]
"""300 steps of it, evaluations left to the command's defaults."""
TINY_RUN = [*TINY_TRAINING, "--eval-freq", "100", "--eval-curve-episodes", "1", "--eval-episodes", "1"]
"""300 steps with one-episode evaluations every 100 steps."""
