"""MinAtar's published DQN configuration as a dqn-tune config: the reference the MinAtar presets are judged against.

From the paper's code (Young & Tian 2019, kenjyoung/MinAtar examples/dqn.py): its network (one 3x3
convolution of 16 channels, then 128 units), batch 32, replay 100,000, a target copy every 1,000
updates (one update per step after learning starts, so every 1,000 steps), epsilon 1.0 -> 0.1,
learning starts at 5,000 steps, gamma 0.99, centered RMSprop at 2.5e-4 (optimizers.RMSPROP_SETTINGS),
Huber loss, no gradient clipping, plain (not Double) DQN. Two differences, both of dqn-tune's trainer:
epsilon decays linearly from step 0 and reaches 0.1 at step 105,000, where MinAtar's holds 1.0 for the
first 5,000 steps and then decays over 100,000; and dqn-tune evaluates greedily (keep_best as for
every config), where the paper reports training returns.
"""

from __future__ import annotations

from dqn_tune.dqn.config import DQNConfig

REFERENCE_LEARNING_STARTS = 5_000
REFERENCE_EXPLORATION_STEPS = 105_000
"""Steps until epsilon reaches its final value: MinAtar's 100,000 decay steps after its 5,000 random ones."""


def minatar_reference(env_id: str, timesteps: int) -> DQNConfig:
    """The reference configuration on `env_id` for a budget of `timesteps` (> 105,000 steps keeps the schedule)."""
    return DQNConfig(
        env_id=env_id,
        total_timesteps=timesteps,
        network="cnn",
        cnn="minatar",
        batch_size=32,
        buffer_size=100_000,
        target_update_interval=1_000,
        learning_starts=REFERENCE_LEARNING_STARTS,
        train_freq=1,
        gradient_steps=1,
        exploration_initial_eps=1.0,
        exploration_final_eps=0.1,
        exploration_fraction=min(1.0, REFERENCE_EXPLORATION_STEPS / timesteps),
        gamma=0.99,
        optimizer="rmsprop",
        learning_rate=2.5e-4,
        loss="huber",
        max_grad_norm=None,
        double_dqn=False,
        tau=1.0,
        eval_freq=max(1, timesteps // 10),
    )
