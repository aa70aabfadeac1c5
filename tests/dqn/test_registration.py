"""Env ids of namespaces gymnasium does not load by itself: dqn-tune's own, and MinAtar's (an optional extra)."""

from __future__ import annotations

import sys

import gymnasium as gym
import pytest

from dqn_tune.dqn.envs import make_env
from dqn_tune.dqn.registration import register_namespace
from dqn_tune.errors import EnvError


def test_dqn_tune_ids_register_on_demand(monkeypatch: pytest.MonkeyPatch) -> None:
    for env_id in [env_id for env_id in gym.registry if env_id.startswith("dqn-tune/")]:
        monkeypatch.delitem(gym.registry, env_id)
    monkeypatch.delitem(sys.modules, "dqn_tune.envs", raising=False)
    register_namespace("dqn-tune/Catch-v0")
    assert {"dqn-tune/Catch-v0", "dqn-tune/CatchCHW-v0"} <= set(gym.registry)


def test_minatar_ids_without_the_package_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for env_id in [env_id for env_id in gym.registry if env_id.startswith("MinAtar/")]:
        monkeypatch.delitem(gym.registry, env_id)
    monkeypatch.setitem(sys.modules, "minatar.gym", None)  # as if MinAtar were not installed: importing it fails
    with pytest.raises(
        EnvError,
        match=r"^env 'MinAtar/Breakout-v1' needs the MinAtar package \(GPL-3.0, an optional "
        r"extra of dqn-tune\): pip install 'dqn-tune\[minatar\]'$",
    ):
        make_env("MinAtar/Breakout-v1")


def test_other_ids_are_left_to_gymnasium() -> None:
    register_namespace("CartPole-v1")
    with pytest.raises(EnvError, match="unknown env id 'NoSuchNamespace/Game-v0'"):
        make_env("NoSuchNamespace/Game-v0")


def test_an_unknown_id_in_a_known_namespace_names_the_namespace_s_ids() -> None:
    with pytest.raises(
        EnvError, match=r"^unknown env id 'dqn-tune/Cat-v0' \(.*\); expected one of dqn-tune's ids: dqn-tune/Catch-v0, "
    ):
        make_env("dqn-tune/Cat-v0")
