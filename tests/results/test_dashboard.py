"""The real optuna-dashboard server on real SQLite studies, queried over plain HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from dqn_tune.cli import main
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.results.dashboard import DashboardServer, start_dashboard
from dqn_tune.tuning.artifacts import LEARNING_CURVE_PNG
from dqn_tune.tuning.records import CONFIG, RUNS, SEED_RETURNS, STEPS_PER_SECOND, WALL_TIME_S
from dqn_tune.tuning.objective import ObjectiveSettings
from dqn_tune.tuning.search_space import DEFAULT_SPACE
from dqn_tune.tuning.study import TuneSettings, run_study


@pytest.fixture
def live_settings(tmp_path: Path, tiny_config: DQNConfig) -> TuneSettings:
    """Two-seed trials of the tiny config that upload learning curves; no pruner, so every trial completes."""
    return TuneSettings(study_name="live", storage_url=f"sqlite:///{tmp_path}/live.db",
                        objective=ObjectiveSettings(base=tiny_config, space=DEFAULT_SPACE, seeds=2),
                        pruner="none", artifacts=True)

def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def base_url(server: DashboardServer) -> str:
    return server.url.removesuffix("/dashboard")


@contextmanager
def serving(storage_url: str) -> Iterator[DashboardServer]:
    """The dashboard on a free port, serving from a thread; shut down whatever happens in the block."""
    server = start_dashboard(storage_url, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def study_id(base: str, name: str) -> int:
    return next(s["study_id"] for s in get_json(f"{base}/api/studies")["study_summaries"] if s["study_name"] == name)


def test_api_lists_the_study_its_trials_values_attributes_and_artifacts(curve_study_url: str) -> None:
    with serving(curve_study_url) as server:
        base = base_url(server)
        assert server.url.startswith("http://127.0.0.1:")
        assert get_json(f"{base}/api/meta")["artifact_is_available"] is True
        assert [s["study_name"] for s in get_json(f"{base}/api/studies")["study_summaries"]] == ["curves"]

        detail = get_json(f"{base}/api/studies/{study_id(base, 'curves')}?after=0")
        trials = detail["trials"]
        assert [t["state"] for t in trials] == ["Complete", "Complete", "Complete", "Pruned"]
        first = trials[0]
        attrs = {a["key"]: a["value"] for a in first["user_attrs"]}
        assert set(attrs) == {CONFIG, RUNS, SEED_RETURNS, STEPS_PER_SECOND, WALL_TIME_S}
        curve_steps = json.loads(attrs[RUNS])[0]["curve_steps"]
        assert curve_steps == [200, 400]
        for trial in trials:
            assert [v["step"] for v in trial["intermediate_values"]] == curve_steps
        [artifact] = first["artifacts"]
        assert (artifact["filename"], artifact["mimetype"]) == (LEARNING_CURVE_PNG, "image/png")
        assert trials[3]["artifacts"] == []

        png_url = f"{base}/artifacts/{first['study_id']}/{first['trial_id']}/{artifact['artifact_id']}"
        with urllib.request.urlopen(png_url, timeout=30) as response:
            assert response.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{base}/api/meta", timeout=5)


def test_cli_prints_the_url_serves_and_stops_on_ctrl_c(curve_study_url: str) -> None:
    process = subprocess.Popen([sys.executable, "-m", "dqn_tune", "dashboard", "--storage", curve_study_url,
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(f"optuna-dashboard for {curve_study_url} at http://127.0.0.1:"), line
        url = line.split(" at ")[1].split()[0]
        assert get_json(url.replace("/dashboard", "/api/meta"))["plotlypy_is_available"] is True
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        assert (process.returncode, out, err) == (0, "dashboard stopped\n", "")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_bad_storage_is_one_line_and_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo.db"
    assert main(["dashboard", "--storage", f"sqlite:///{missing}", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err == (f"dqn-tune: error: no SQLite database at '{missing}' (storage 'sqlite:///{missing}'); "
                   "check --storage, or create a study first with 'dqn-tune tune'\n")
    assert list(tmp_path.iterdir()) == []

    garbage = tmp_path / "garbage.db"
    garbage.write_text("not a database")
    assert main(["dashboard", "--storage", f"sqlite:///{garbage}", "--port", "0"]) == 2
    assert capsys.readouterr().err == (f"dqn-tune: error: cannot open storage 'sqlite:///{garbage}': "
                                       "file is not a database\n")
    assert garbage.read_text() == "not a database"


def test_busy_port_and_bad_port_are_one_line_errors(curve_study_url: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with serving(curve_study_url) as server:
        port = server.server_address[1]
        assert main(["dashboard", "--storage", curve_study_url, "--port", str(port)]) == 2
        assert capsys.readouterr().err == (f"dqn-tune: error: cannot listen on 127.0.0.1:{port}: Address already "
                                           "in use; choose another --port or --host\n")
    assert main(["dashboard", "--storage", curve_study_url, "--port", "70000"]) == 2
    assert capsys.readouterr().err == ("dqn-tune: error: --port = 70000 is invalid: "
                                       "expected 0-65535 (0 picks a free port)\n")


def poll_until_done(base: str, name: str, done: threading.Event, polls: list[int], errors: list[str]) -> None:
    """Read the study's trials over HTTP, as an open dashboard page does, until `done` is set."""
    while not done.is_set():
        try:
            names = [s["study_name"] for s in get_json(f"{base}/api/studies")["study_summaries"]]
            if name in names:
                number = study_id(base, name)
                get_json(f"{base}/api/studies/{number}?after=0")
                get_json(f"{base}/api/studies/{number}/param_importances")
                polls.append(number)
        except (urllib.error.URLError, OSError) as exc:
            errors.append(repr(exc))
        time.sleep(0.05)


@pytest.mark.slow
def test_open_dashboard_on_a_live_two_worker_sqlite_study_loses_no_trial(live_settings: TuneSettings) -> None:
    """optuna-dashboard issue 545: an open dashboard crashed a running SQLite study with 'database is locked'."""
    settings = live_settings
    optuna.create_study(study_name="other", storage=settings.storage_url)  # the dashboard needs an existing file
    done = threading.Event()
    polls: list[int] = []
    errors: list[str] = []
    with serving(settings.storage_url) as server:
        poller = threading.Thread(target=poll_until_done,
                                  args=(base_url(server), settings.study_name, done, polls, errors))
        poller.start()
        try:
            summary = run_study(settings, trials=6, workers=2, echo=lambda _: None)
        finally:
            done.set()
            poller.join(timeout=60)
    study = optuna.load_study(study_name=settings.study_name, storage=settings.storage_url)
    assert summary.trials_run == 6 and len(study.trials) == 6
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    assert all(t.user_attrs.get(SEED_RETURNS) for t in study.trials)
    assert errors == [] and len(polls) > 10, (errors, len(polls))
