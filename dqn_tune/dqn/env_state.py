"""An env's state as plain data, where gymnasium allows: what a checkpoint keeps of each env.

Gymnasium has no API for an env's state. Classic-control envs (CartPole, Acrobot, MountainCar) and
their wrappers (TimeLimit's elapsed steps, OrderEnforcing, PassiveEnvChecker) keep all of it in
instance attributes holding numbers, strings, numpy arrays and the env's numpy Generator: copying
those attributes copies the env. Attributes holding plain Python objects (MinAtar's game, its
`RandomState`) are captured the same way, attribute by attribute, and restored into the objects of
the fresh env. An env holding anything else (LunarLander's Box2D world, an emulator handle) cannot be
captured without pickling objects, which a checkpoint never does: only its Generator is kept, and its
episode restarts at resume. Spaces and the env's spec are made by the constructor and never change,
so they are not state.
"""

from __future__ import annotations

import types
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

from dqn_tune.dqn.random_state import set_generator_states

Plain = Any
"""None, bool, int, float, str, a numpy array or scalar, and lists, tuples and str-keyed dicts of them."""
STATIC = (gym.Space, EnvSpec)
"""Attribute types the constructor makes and stepping never changes."""
LAZY_GENERATOR = ("_np_random", "_np_random_seed")
"""The attributes of `gym.Env` made on first reading its `np_random`, left out so that what is captured does not
depend on whether someone read it (MinAtar's envs seed their games and never do): the Generator's state is the
state's "rng"; the seed it was made from is a record, not state, and the restored env keeps its own."""


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
    if saved is not None:  # states captured before LAZY_GENERATOR was left out may hold it: "rng" has its state
        saved = [{name: value for name, value in layer.items() if name not in LAZY_GENERATOR} for layer in saved]
        if len(saved) != len(layers):
            raise ValueError(f"env state has {len(saved)} layers, the env {len(layers)}")
        for layer, attributes in zip(layers, saved, strict=True):
            _check_same_attributes(layer, attributes)
    set_generator_states([env.unwrapped.np_random], [state["rng"]])
    if saved is not None:
        for layer, attributes in zip(layers, saved, strict=True):
            _set_attributes(layer, attributes)


def _check_same_attributes(owner: object, attributes: dict[str, Plain]) -> None:
    """ValueError unless `owner` (a layer or an object in one) has the attributes `attributes` captured, nested
    objects alike."""
    current = _state_attributes(owner)
    if set(attributes) != set(current):
        raise ValueError(f"env state of {type(owner).__name__} has other attributes")
    for name, value in current.items():
        if _is_object(value):
            _check_same_attributes(value, attributes[name])


def _set_attributes(owner: object, attributes: dict[str, Plain]) -> None:
    """Give `owner` the captured attributes: Generators and RandomStates get their states, nested objects their
    attributes, anything else a copy of the value."""
    for name, value in attributes.items():
        current = getattr(owner, name)
        if isinstance(current, np.random.Generator):
            set_generator_states([current], [value])
        elif isinstance(current, np.random.RandomState):
            current.set_state(value)
        elif _is_object(current):
            _set_attributes(current, value)
        else:
            setattr(owner, name, _copied(value))


def _layers(env: gym.Env) -> list[gym.Env]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _plain_attributes(owner: object, ancestors: tuple[int, ...] = ()) -> dict[str, Plain]:
    """`_state_attributes` as plain data: Generators and RandomStates as their states, plain Python objects as their
    attributes."""
    return {name: _plain(value, (*ancestors, id(owner))) for name, value in _state_attributes(owner).items()}


def _state_attributes(owner: object) -> dict[str, Any]:
    """The attributes of a layer (or of an object in one) but a wrapper's wrapped env, static ones and the env's
    lazily made Generator."""
    return {name: value for name, value in vars(owner).items() if _is_state(owner, name, value)}


def _is_state(owner: object, name: str, value: Any) -> bool:
    """Whether attribute `name` of `owner` holding `value` is part of an env's state (see `_state_attributes`)."""
    if isinstance(owner, gym.Wrapper) and name == "env":
        return False
    return not isinstance(value, STATIC) and not (isinstance(owner, gym.Env) and name in LAZY_GENERATOR)


def _plain(value: Any, ancestors: tuple[int, ...]) -> Plain:
    """An attribute's value copied as plain data; NotPlain for anything else (and for an object that holds one it
    is in). Generators, RandomStates and objects are taken as attributes only: restoring puts their state back into
    the fresh env's own, which a list or dict entry would not get."""
    if isinstance(value, np.random.Generator):
        return value.bit_generator.state
    if isinstance(value, np.random.RandomState):
        return value.get_state(legacy=False)
    if _is_object(value) and id(value) not in ancestors:
        return _plain_attributes(value, ancestors)
    return _data(value)


def _data(value: Any) -> Plain:
    """`value` copied if it is data: None, bool, int, float, str, a numeric numpy array or scalar, and lists, tuples
    and str-keyed dicts of them; NotPlain for anything else."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biufc":
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_data(item) for item in value)
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _data(item) for key, item in value.items()}
    raise NotPlain(type(value).__name__)


def _is_object(value: Any) -> bool:
    """An instance of a Python class with its attributes in `__dict__` (not a module, class or callable)."""
    return hasattr(value, "__dict__") and not callable(value) and not isinstance(value, (type, types.ModuleType))


def _copied(value: Plain) -> Plain:
    """A copy of plain data, so that the env never shares an array with a checkpoint."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_copied(item) for item in value)
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    return value
