"""Environment construction: gymnasium envs that DQN can handle, or a clear error."""

from __future__ import annotations

import gymnasium as gym

from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.dqn.registration import register_namespace
from dqn_tune.errors import EnvError, shown


def make_env(env_id: str, *, render_mode: str | None = None) -> gym.Env:
    """Make `env_id`, checking it has a Discrete action space and a Box observation space."""
    register_namespace(env_id)
    try:  # render_mode only when asked: gymnasium does not require an env's constructor to take it
        env = gym.make(env_id) if render_mode is None else gym.make(env_id, render_mode=render_mode)
    except TypeError as exc:  # the env's constructor refused its arguments, e.g. a render_mode it does not take
        raise EnvError(
            f"env {shown(env_id)} could not be made: {_reason(exc)}"
            + (f"; it cannot render {render_mode!r} frames" if render_mode is not None else "")
        ) from exc
    except gym.error.DependencyNotInstalled as exc:
        box2d = " For Box2D envs: pip install 'dqn-tune[box2d]'" if "box2d" in str(exc).lower() else ""
        raise EnvError(f"env {shown(env_id)} needs an extra package: {_reason(exc)}.{box2d}") from exc
    except (gym.error.Error, ImportError) as exc:  # ImportError: an id "module:Env" whose module is missing
        raise EnvError(f"unknown env id {shown(env_id)} ({_reason(exc)}); expected {_expected(env_id, exc)}") from exc
    try:
        check_spaces(env_id, env.observation_space, env.action_space)
    except EnvError:
        env.close()
        raise
    return env


def _expected(env_id: str, exc: Exception) -> str:
    """What to suggest for an unknown id: where the module of an id "module:Env" is looked for, else the ids
    registered in its namespace (MinAtar's games, say), else a gymnasium id."""
    module, colon, _ = env_id.partition(":")
    missing = {getattr(error, "name", None) for error in (exc, exc.__cause__)}  # gymnasium re-raises with a cause
    if colon and module.partition(".")[0] in missing:
        # console scripts put their own directory on sys.path, not the working directory as `python -m` does
        return f"a module {module!r} on Python's import path that registers the id (for a file here: PYTHONPATH=.)"
    namespace, slash, _ = env_id.partition("/")
    siblings = sorted(known for known in gym.registry if slash and known.startswith(namespace + "/"))
    if not siblings:
        return "a registered gymnasium id such as 'CartPole-v1'"
    return f"one of {namespace}'s ids: {', '.join(siblings)}"


def _reason(exc: Exception) -> str:
    """Gymnasium's message for an error, on one line and at most 200 characters (it repeats the id)."""
    text = " ".join(str(exc).split()).replace("\0", "\\x00")
    return text if len(text) <= 200 else text[:197] + "..."


def check_spaces(env_id: str, observation_space: gym.Space, action_space: gym.Space) -> None:
    """Raise EnvError unless the spaces are a Box and a Discrete space (the network family checks the shape)."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise EnvError(
            f"env {env_id!r} has a {type(action_space).__name__} action space; DQN needs a Discrete action space"
        )
    if not isinstance(observation_space, gym.spaces.Box):
        raise EnvError(
            f"env {env_id!r} has observation space {observation_space}; DQN here needs a Box observation space"
        )


def env_spaces(env: gym.Env) -> tuple[ObservationSpec, int]:
    """(observation spec, number of actions) of a checked env."""
    observation_space, action_space = env.observation_space, env.action_space
    if not isinstance(observation_space, gym.spaces.Box) or not isinstance(action_space, gym.spaces.Discrete):
        raise TypeError(f"expected an env that make_env checked (Box observations, Discrete actions), got {env}")
    return ObservationSpec.of(observation_space), int(action_space.n)
