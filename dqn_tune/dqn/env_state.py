"""An env's state as plain data, where gymnasium allows: what a checkpoint keeps of each env.

Gymnasium has no API for an env's state. Classic-control envs (CartPole, Acrobot, MountainCar) and
their wrappers (TimeLimit's elapsed steps, OrderEnforcing, PassiveEnvChecker) keep all of it in
instance attributes holding numbers, strings, numpy arrays and the env's numpy Generator: copying
those attributes copies the env. An env holding anything else (LunarLander's Box2D world, an
emulator handle) cannot be captured without pickling objects, which a checkpoint never does: only
its Generator is kept, and its episode restarts at resume. Spaces and the env's spec are made by
the constructor and never change, so they are not state.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

from dqn_tune.dqn.random_state import set_generator_states

Plain = Any
"""None, bool, int, float, str, a numpy array or scalar, a Generator, and lists, tuples and str-keyed dicts of them."""
STATIC = (gym.Space, EnvSpec)
"""Attribute types the constructor makes and stepping never changes."""


class NotPlain(Exception):
    """An attribute holds an object that is not plain data."""


def env_state(env: gym.Env) -> dict[str, Any]:
    """{"layers": each wrapper's and the env's attributes (outermost first), or None where the whole state cannot be
    captured as plain data; "rng": the env's Generator state}."""
    try:
        layers: list[dict[str, Plain]] | None = [_plain_attributes(layer) for layer in _layers(env)]
    except NotPlain:
        layers = None
    return {"layers": layers, "rng": env.unwrapped.np_random.bit_generator.state}


def restorable(state: dict[str, Any]) -> bool:
    """Whether `env_state` captured the whole env (else only its Generator)."""
    return state["layers"] is not None


def set_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Put `env` in the state `env_state` captured of an env made the same way; only its Generator when not
    `restorable`. ValueError, before anything changes, if the state has other wrappers or attributes."""
    layers = _layers(env)
    saved = state["layers"]
    if saved is not None:
        if len(saved) != len(layers):
            raise ValueError(f"env state has {len(saved)} layers, the env {len(layers)}")
        for layer, attributes in zip(layers, saved, strict=True):
            if set(attributes) != set(_plain_attributes(layer)):
                raise ValueError(f"env state of {type(layer).__name__} has other attributes")
    set_generator_states([env.unwrapped.np_random], [state["rng"]])
    if saved is not None:
        for layer, attributes in zip(layers, saved, strict=True):
            for name, value in attributes.items():
                if isinstance(getattr(layer, name), np.random.Generator):
                    set_generator_states([getattr(layer, name)], [value])
                else:
                    setattr(layer, name, _copied(value))


def _layers(env: gym.Env) -> list[gym.Env]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _plain_attributes(layer: gym.Env) -> dict[str, Plain]:
    """The layer's own attributes except the wrapped env and static ones, as plain data (Generators as states)."""
    return {
        name: _plain(value) for name, value in vars(layer).items() if name != "env" and not isinstance(value, STATIC)
    }


def _plain(value: Any) -> Plain:
    """`value` copied as plain data (a Generator as its state); NotPlain for anything else."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.random.Generator):
        return value.bit_generator.state
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biufc":
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _plain(item) for key, item in value.items()}
    raise NotPlain(type(value).__name__)


def _copied(value: Plain) -> Plain:
    """A copy of plain data, so that the env never shares an array with a checkpoint."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_copied(item) for item in value)
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    return value
