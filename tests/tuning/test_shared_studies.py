"""Commands started together on one study, with real processes: one lock covers create / check / record, and
each command samples its own configs while a lone command with a seed stays reproducible."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_faults import start, trials

from dqn_tune.tuning import records


def finish(processes: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    """(exit status, stdout, stderr) of each process, in order."""
    outputs = [p.communicate(timeout=300) for p in processes]
    return [(p.returncode, out, err) for p, (out, err) in zip(processes, outputs, strict=True)]


@pytest.mark.slow
def test_two_budgets_started_together_on_a_fresh_study_one_is_refused(tmp_path: Path) -> None:
    outcomes = finish([start(tmp_path, "--trials", "1", "--timesteps", str(steps)) for steps in (1000, 1500)])
    statuses = sorted(status for status, _, _ in outcomes)
    assert statuses == [0, 2], outcomes
    [refused] = [err for status, _, err in outcomes if status == 2]
    assert "was run with total_timesteps = " in refused and refused.count("\n") == 1
    study_trials = trials(tmp_path)
    budgets = {records.trial_config(t).total_timesteps for t in study_trials}
    assert len(study_trials) == 1 and len(budgets) == 1


@pytest.mark.slow
def test_commands_sharing_a_study_sample_apart_and_a_lone_command_reproduces(tmp_path: Path) -> None:
    alone, again, shared = (tmp_path / name for name in ("alone", "again", "shared"))
    for folder in (alone, again, shared):
        folder.mkdir()
    # a seeded study is reproducible with one process (workers finish in any order); samples, not learning, matter
    one = ["--workers", "1", "--timesteps", "1000"]
    outcomes = finish(
        [
            start(alone, "--trials", "2", *one),
            start(again, "--trials", "2", *one),
            start(shared, "--trials", "1", *one),
            start(shared, "--trials", "1", *one),
        ]
    )
    assert [status for status, _, _ in outcomes] == [0, 0, 0, 0], outcomes
    lone = [t.params for t in trials(alone)]
    assert [t.params for t in trials(again)] == lone and lone[0] != lone[1]
    together = [t.params for t in trials(shared)]
    assert len(together) == 2 and together[0] != together[1]
    assert lone[0] in together  # the first command recorded samples what a lone command samples
