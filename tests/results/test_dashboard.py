"""The real optuna-dashboard server on real SQLite studies, queried over plain HTTP."""

from __future__ import annotations

import http.client
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
import optuna_dashboard
import pytest
from optuna.artifacts import upload_artifact
from optuna.trial import TrialState

from dqn_tune.cli import main
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.results.dashboard import DashboardServer, start_dashboard
from dqn_tune.runner.storage import StorageSettings
from dqn_tune.tuning import records
from dqn_tune.tuning.artifacts import (
    LEARNING_CURVE_PNG,
    artifact_dir,
    make_artifact_store,
)
from dqn_tune.tuning.objective import ObjectiveSettings
from dqn_tune.tuning.records import (
    CONFIG_SUMMARY,
    RUNS_SUMMARY,
    SEED_RETURNS,
    STEPS_PER_SECOND,
    WALL_TIME_S,
)
from dqn_tune.tuning.search_space import DEFAULT_SPACE
from dqn_tune.tuning.study import TuneSettings, run_study


@pytest.fixture
def live_settings(tmp_path: Path, tiny_config: DQNConfig) -> TuneSettings:
    """Two-seed trials of the tiny config that upload learning curves; no pruner, so every trial completes."""
    return TuneSettings(
        study_name="live",
        storage=StorageSettings(f"sqlite:///{tmp_path}/live.db"),
        objective=ObjectiveSettings(base=tiny_config, space=DEFAULT_SPACE, seeds=2),
        pruner="none",
        artifacts=True,
    )


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def base_url(server: DashboardServer) -> str:
    return server.url.removesuffix("/dashboard")


@contextmanager
def serving(storage_url: str, *, allow_writes: bool = False) -> Iterator[DashboardServer]:
    """The dashboard on a free port, serving from a thread; shut down whatever happens in the block."""
    server = start_dashboard(storage_url, port=0, allow_writes=allow_writes)
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
        assert set(attrs) == {CONFIG_SUMMARY, RUNS_SUMMARY, SEED_RETURNS, STEPS_PER_SECOND, WALL_TIME_S}
        # The page prints each user attribute on one unwrapped line, and a long one widens the whole page: every
        # one is short; the machine-readable config and runs are system attributes, which the page leaves out.
        assert all(len(value) < 160 and "\n" not in value for value in attrs.values()), attrs
        assert attrs[RUNS_SUMMARY].startswith("seed ") and " (weights of step " in attrs[RUNS_SUMMARY]
        stored = optuna.load_study(study_name="curves", storage=curve_study_url).trials[0]
        assert records.trial_config(stored).total_timesteps == 400
        curve_steps = list(records.trial_runs(stored)[0].curve_steps)
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


def test_the_validated_pick_is_marked_where_the_dashboard_shows_it(validated_study_url: str) -> None:
    """The "Best Trial" badge marks the best tuning value; validation's pick heads the study's note and attributes,
    and each validated trial's own note (shown at the top of its page) gives its rank and figures."""
    study = optuna.load_study(study_name="validated", storage=validated_study_url)
    picked = records.recommendation(study)["trial"]  # type: ignore[index]
    with serving(validated_study_url) as server:
        base = base_url(server)
        detail = get_json(f"{base}/api/studies/{study_id(base, 'validated')}?after=0")
    first = detail["user_attrs"][0]
    assert first["key"] == records.RECOMMENDED_TRIAL and first["value"].startswith(f"trial {picked}: validation mean ")
    assert detail["note"]["body"].startswith(f"## dqn-tune study `validated`\n\n**Recommended: trial {picked}** (")
    notes = {trial["number"]: trial["note"]["body"] for trial in detail["trials"]}
    assert notes[picked].startswith("**Recommended by validation**: mean ")
    runner_up = next(number for number, body in notes.items() if body.startswith("Validated: rank 2 of 2"))
    assert runner_up != picked and sum(bool(body) for body in notes.values()) == 2


def test_cli_prints_the_url_serves_and_stops_on_ctrl_c(curve_study_url: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "dqn_tune", "dashboard", "--storage", curve_study_url, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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
    assert err == (
        f"dqn-tune: error: no SQLite database at '{missing}' (storage 'sqlite:///{missing}'); "
        "check --storage, or create a study first with 'dqn-tune tune'\n"
    )
    assert list(tmp_path.iterdir()) == []

    garbage = tmp_path / "garbage.db"
    garbage.write_text("not a database")
    assert main(["dashboard", "--storage", f"sqlite:///{garbage}", "--port", "0"]) == 2
    assert capsys.readouterr().err == (
        f"dqn-tune: error: cannot open storage 'sqlite:///{garbage}': file is not a database\n"
    )
    assert garbage.read_text() == "not a database"


def test_busy_port_and_bad_port_are_one_line_errors(curve_study_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with serving(curve_study_url) as server:
        port = server.server_address[1]
        assert main(["dashboard", "--storage", curve_study_url, "--port", str(port)]) == 2
        assert capsys.readouterr().err == (
            f"dqn-tune: error: cannot listen on 127.0.0.1:{port}: Address already "
            "in use; choose another --port or --host\n"
        )
    assert main(["dashboard", "--storage", curve_study_url, "--port", "70000"]) == 2
    assert capsys.readouterr().err == (
        "dqn-tune: error: --port = 70000 is invalid: expected 0-65535 (0 picks a free port)\n"
    )


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
        poller = threading.Thread(
            target=poll_until_done, args=(base_url(server), settings.study_name, done, polls, errors)
        )
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


@pytest.fixture
def kept_study_url(tmp_path: Path) -> str:
    """Study 'kept' in a fresh SQLite file: two complete trials with params and attributes and one still
    running, a study note, and a note and an artifact on trial 0."""
    url = f"sqlite:///{tmp_path / 'kept.db'}"
    study = optuna.create_study(study_name="kept", storage=url, direction="maximize")
    optuna_dashboard.save_note(study, "study note: do not delete")
    curve = tmp_path / "curve.txt"
    curve.write_text("a learning curve")
    for value in (1.0, 2.0, None):
        trial = study.ask()
        trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
        trial.set_user_attr("seed_returns", [value, value])
        if trial.number == 0:
            optuna_dashboard.save_note(trial, "trial note")
            upload_artifact(artifact_store=make_artifact_store(url), file_path=str(curve), study_or_trial=trial)
        if value is not None:
            study.tell(trial, value)
    return url


def stored_state(url: str) -> Any:
    """Everything the storage and the artifact store hold, in a comparable form."""
    storage = optuna.storages.RDBStorage(url)
    studies = []
    for summary in optuna.get_all_study_summaries(storage):
        study_id = storage.get_study_id_from_name(summary.study_name)
        trials = [
            (t.number, t.state, t.values, t.params, t.user_attrs, t.system_attrs)
            for t in storage.get_all_trials(study_id)
        ]
        studies.append(
            (
                summary.study_name,
                storage.get_study_user_attrs(study_id),
                storage.get_study_system_attrs(study_id),
                trials,
            )
        )
    storage.engine.dispose()
    files = {
        p.relative_to(artifact_dir(url)).as_posix(): p.read_bytes()
        for p in sorted(artifact_dir(url).rglob("*"))
        if p.is_file()
    }
    return studies, files


def request(server: DashboardServer, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    """(status, body) of one HTTP request to the server, with any method."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def write_requests(study: int, trial: int, running: int, artifact: str) -> list[tuple[str, str, Any]]:
    """One request for each kind of change optuna-dashboard 0.21 makes, plus methods it has no route for."""
    return [
        ("POST", "/api/studies", {"study_name": "created", "directions": ["maximize"]}),
        ("POST", f"/api/studies/{study}/rename", {"study_name": "renamed"}),
        ("DELETE", f"/api/studies/{study}", {}),
        ("delete", f"/api/studies/{study}", {}),  # lower case: bottle upper-cases the method
        ("PUT", f"/api/studies/{study}/note", {"version": 2, "body": "overwritten"}),
        ("PUT", f"/api/studies/{study}/{trial}/note", {"version": 2, "body": "overwritten"}),
        ("POST", f"/api/trials/{running}/tell", {"state": "Fail"}),
        ("POST", f"/api/trials/{running}/user-attrs", {"user_attrs": {"seed_returns": "gone"}}),
        ("POST", f"/api/studies/{study}/{running}/skip", {}),
        ("POST", f"/api/artifacts/{study}/{running}", {"file": "data:text/plain;base64,eA==", "filename": "x.txt"}),
        ("POST", f"/api/artifacts/{study}", {"file": "data:text/plain;base64,eA==", "filename": "x.txt"}),
        ("DELETE", f"/api/artifacts/{study}/{trial}/{artifact}", None),
        ("POST", f"/api/studies/{study}/preference", {"mode": "ChooseWorst", "candidates": [], "clicked": 0}),
        ("POST", "/incompatible-rdb-schema", None),
        ("PATCH", f"/api/studies/{study}", {}),
        ("OPTIONS", "/api/studies", None),
        ("PURGE", "/api/studies", None),
    ]


def test_dashboard_refuses_every_write_with_403_and_the_storage_is_unchanged(kept_study_url: str) -> None:
    before = stored_state(kept_study_url)
    with serving(kept_study_url) as server:
        base = base_url(server)
        study = study_id(base, "kept")
        detail = get_json(f"{base}/api/studies/{study}?after=0")
        trial = detail["trials"][0]
        requests = write_requests(
            study, trial["trial_id"], detail["trials"][2]["trial_id"], trial["artifacts"][0]["artifact_id"]
        )
        for method, path, body in requests:
            status, answer = request(server, method, path, body)
            assert status == 403, (method, path, status, answer)
            reason = json.loads(answer)["reason"]
            assert "read-only" in reason and "dqn-tune dashboard --allow-writes" in reason

        # reading still works: the page, the APIs, CSV, artifacts, HEAD
        assert [s["study_name"] for s in get_json(f"{base}/api/studies")["study_summaries"]] == ["kept"]
        assert get_json(f"{base}/api/studies/{study}?after=0")["note"]["body"] == "study note: do not delete"
        for path in (
            "/dashboard",
            f"/dashboard/studies/{study}",
            f"/csv/{study}",
            "/api/meta",
            f"/artifacts/{study}/{trial['trial_id']}/{trial['artifacts'][0]['artifact_id']}",
        ):
            assert request(server, "GET", path)[0] == 200, path
        assert request(server, "HEAD", "/api/meta") == (200, b"")
    assert stored_state(kept_study_url) == before


def test_allow_writes_lets_the_dashboard_change_and_delete_studies(kept_study_url: str) -> None:
    with serving(kept_study_url, allow_writes=True) as server:
        base = base_url(server)
        study = study_id(base, "kept")
        assert request(server, "PUT", f"/api/studies/{study}/note", {"version": 2, "body": "edited"})[0] == 204
        assert get_json(f"{base}/api/studies/{study}?after=0")["note"]["body"] == "edited"
        assert request(server, "POST", "/api/studies", {"study_name": "created", "directions": ["minimize"]})[0] == 201
        assert request(server, "DELETE", f"/api/studies/{study}", {})[0] == 204
        assert [s["study_name"] for s in get_json(f"{base}/api/studies")["study_summaries"]] == ["created"]
    assert [s.study_name for s in optuna.get_all_study_summaries(kept_study_url)] == ["created"]


@pytest.mark.parametrize(("flags", "delete_status"), [([], 403), (["--allow-writes"], 204)])
def test_cli_dashboard_is_read_only_unless_allow_writes(
    kept_study_url: str, flags: list[str], delete_status: int
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "dqn_tune", "dashboard", "--storage", kept_study_url, "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split(" at ")[1].split()[0]
        host, port = url.removeprefix("http://").split("/")[0].rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("DELETE", f"/api/studies/{study_id(url.removesuffix('/dashboard'), 'kept')}")
        assert connection.getresponse().status == delete_status
        connection.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    names = [s.study_name for s in optuna.get_all_study_summaries(kept_study_url)]
    assert names == ([] if flags else ["kept"])
