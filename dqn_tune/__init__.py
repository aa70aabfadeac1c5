"""dqn-tune: find good DQN hyperparameters with Optuna and train the best into a saved agent."""

from dqn_tune.dqn.agent import Agent, load_agent, save_agent
from dqn_tune.dqn.batched_trainer import GroupEvalCallback, train_seeds
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.trainer import TrainResult, train

__all__ = ["Agent", "DQNConfig", "GroupEvalCallback", "TrainResult", "load_agent", "save_agent", "train", "train_seeds"]
__version__ = "0.1.0"
