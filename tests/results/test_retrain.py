"""retrain_best and `dqn-tune retrain` on real studies in tmp SQLite files, with tiny real training."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import optuna
import pytest
import torch

from dqn_tune.cli import main
from dqn_tune.dqn.agent import Agent, load_agent
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.evaluation import EvalStats
from dqn_tune.dqn.trainer import train
from dqn_tune.results.retrain import (
    SELECTION_EPISODES,
    RetrainOutcome,
    SeedOutcome,
    output_paths,
    retrain_best,
    selection_seed,
)
from dqn_tune.runner.storage import open_storage
from dqn_tune.tuning import records
from dqn_tune.tuning.recommendation import ConfigStats
from dqn_tune.tuning.records import store_config, store_runs
from dqn_tune.tuning.seeds import RETRAIN, retrain_seeds, validation_seeds


def add_trained_trial(study: optuna.Study, config: DQNConfig, seed: int, params: dict[str, float]) -> None:
    """A COMPLETE trial that stores `config` and one real run, as the tuning objective does."""
    trial = study.ask()
    for name, value in params.items():
        trial.suggest_float(name, value, value)
    store_config(trial, config)
    result = train(config, seed=seed)
    store_runs(trial, [result])
    study.tell(trial, result.mean_return)


def make_study(url: str, name: str = "cartpole") -> optuna.Study:
    return optuna.create_study(study_name=name, storage=open_storage(url, heartbeat=False), direction="maximize")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def two_trials(tmp_path: Path, tiny_config: DQNConfig) -> tuple[str, Path]:
    """A study of two complete trials whose stored configs differ from what their param names suggest."""
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    study = make_study(url)
    add_trained_trial(study, tiny_config.replace(learning_rate=3e-3), seed=7, params={"lr": 0.5})
    add_trained_trial(study, tiny_config.replace(hidden_sizes=(24,)), seed=8, params={"lr": 0.25})
    return url, db


def test_retrain_saves_the_best_of_fresh_seeds_with_provenance(two_trials: tuple[str, Path], tmp_path: Path) -> None:
    url, db = two_trials
    before = digest(db)
    study = optuna.load_study(study_name="cartpole", storage=url)
    best = study.best_trial
    out = tmp_path / "final.pt"

    outcome = retrain_best(study_name="cartpole", storage=url, seeds=2, out=out, eval_episodes=3)

    assert digest(db) == before
    agent = load_agent(out)
    assert agent.config == records.trial_config(best)  # as stored, not from the params
    meta = agent.metadata
    assert (meta["study_name"], meta["trial_number"], meta["storage"]) == ("cartpole", best.number, url)
    assert meta["params"] == best.params and meta["trial_value"] == best.value
    seeds = meta["retrain"]["seeds"]
    assert [s["seed"] for s in seeds] == retrain_seeds(2)
    assert meta["retrain"]["best_seed"] == max(seeds, key=lambda s: s["selection_return"])["seed"] == outcome.best_seed
    assert (
        meta["selection"]
        == outcome.selection
        == ("best tuning value; the study has no validation: run 'dqn-tune validate'")
    )
    assert outcome.validation is None and outcome.rule.startswith("tolerance (the trial was not validated)")
    assert meta["training"]["seed"] == outcome.best_seed
    assert {"torch", "optuna", "gymnasium"} <= set(meta["versions"])
    kept = next(s for s in seeds if s["seed"] == outcome.best_seed)
    assert agent.evaluate(3, seed=0).mean == kept["mean_return"]

    _, curve, summary = output_paths(out)
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = summary.read_text()
    assert f"trial {best.number}" in text and f"{best.value:.2f}" in text
    assert all(f"{s['mean_return']:.2f}" in text for s in seeds)
    assert "trial value (value)" in text and outcome.tuned_final == records.trial_runs(best)[0].mean_return
    assert f"final return {outcome.tuned_final:.2f}" in text
    assert ("reproduces**" in text) == outcome.reproduces and outcome.rule in text


def test_cli_retrains_trial_zero_and_evaluate_reads_the_file(
    two_trials: tuple[str, Path], tmp_path: Path, tiny_config: DQNConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = two_trials
    out = tmp_path / "trial0.pt"
    code = main(
        [
            "retrain",
            "--study-name",
            "cartpole",
            "--storage",
            url,
            "--trial",
            "0",
            "--retrain-seeds",
            "1",
            "--timesteps",
            "400",
            "--eval-episodes",
            "2",
            "--eval-seed",
            "5",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    agent = load_agent(out)
    assert agent.metadata["trial_number"] == 0
    assert agent.config == tiny_config.replace(learning_rate=3e-3, total_timesteps=400, eval_freq=40)  # 10 evaluations
    figure = agent.metadata["retrain"]["seeds"][0]["mean_return"]
    capsys.readouterr()
    assert main(["evaluate", str(out), "--episodes", "2", "--seed", "5"]) == 0
    assert f"mean return {figure:.2f}" in capsys.readouterr().out


def test_retrain_takes_the_recommended_trial_says_so_and_judges_by_its_interval(
    validated_study_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = optuna.load_study(study_name="validated", storage=validated_study_url)
    recommended = records.recommendation(study)["trial"]  # type: ignore[index]
    out = tmp_path / "validated.pt"
    assert (
        main(
            [
                "retrain",
                "--study-name",
                "validated",
                "--storage",
                validated_study_url,
                "--retrain-seeds",
                "2",
                "--eval-episodes",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    stdout = capsys.readouterr().out
    assert f"trial {recommended} of 'validated': recommended by validation on held-out seeds\n" in stdout
    assert f"trial {recommended} (recommended by validation on held-out seeds): value " in stdout
    meta = load_agent(out).metadata
    assert meta["trial_number"] == recommended
    seeds = [s["seed"] for s in meta["retrain"]["seeds"]]
    assert seeds == retrain_seeds(2) and all(seed in RETRAIN for seed in seeds)
    tuning_seeds = {run.seed for trial in study.trials for run in records.trial_runs(trial)}
    assert not set(seeds) & (tuning_seeds | set(validation_seeds(2)))
    assert meta["retrain"]["rule"].startswith("validation seeds: the 2 retrained seeds (mean ")
    assert f"rule: {meta['retrain']['rule']}" in stdout


def outcome_with(retrained: tuple[float, ...], validation: ConfigStats | None, tuned: float = 100.0) -> RetrainOutcome:
    """A RetrainOutcome whose seeds have the `retrained` held-out means."""
    seeds = tuple(SeedOutcome(seed, value, 0.0, value, 1.0, value) for seed, value in enumerate(retrained))
    return RetrainOutcome(
        "s",
        3,
        "why",
        tuned,
        "final",
        (),
        100,
        100,
        100,
        0,
        20,
        1,
        seeds,
        0,
        Path("a.pt"),
        Path("a.png"),
        Path("a.md"),
        validation,
    )


def test_the_verdict_tests_the_retrained_seeds_against_the_validation_seeds() -> None:
    validated = ConfigStats(3, 100.0, (1, 2, 3, 4), (60.0, 70.0, 80.0, 90.0))
    low, high = validated.interval.low, validated.interval.high
    assert 60 < low < 75 < high < 90
    # every retrained seed below every held-out seed: 1 of the C(7, 3) = 35 splits is as low, p = 1/35
    below = outcome_with((50.0, 55.0, 58.0), validated)
    assert not below.reproduces and below.shortfall_p == pytest.approx(1 / 35)
    assert below.rule == (
        "validation seeds: the 3 retrained seeds (mean 54.33, below the 95% CI "
        f"[{low:.2f}, {high:.2f}] of trial 3's 4 held-out seeds, mean 75.00) must not be "
        "significantly below them: one-sided permutation test of the means, p = 0.029 "
        "(below 0.05: a significant shortfall)"
    )
    assert outcome_with((65.0, 75.0, 85.0), validated).rule.endswith("(not below 0.05: no significant shortfall)")
    assert outcome_with((65.0, 75.0, 85.0), validated).reproduces and outcome_with((95.0, 99.0), validated).reproduces
    # without a validation (or a second retrained seed) the means are judged against the tuning value instead
    assert not outcome_with((75.0,), None).reproduces and outcome_with((95.0,), None).reproduces
    assert outcome_with((95.0,), None).rule.startswith("tolerance (the trial was not validated): ")
    assert outcome_with((75.0,), validated).rule.startswith("tolerance (a single retrained seed): ")
    single = ConfigStats(3, 100.0, (1,), (60.0,), diverged=1)
    assert outcome_with((95.0,), single).rule.startswith("tolerance (its validation has fewer than 2 seeds): ")


def test_a_collapsed_seed_at_the_return_cap_is_judged_by_the_test_not_by_a_ci_of_no_width() -> None:
    """Every held-out seed at CartPole's cap gives the CI [500, 500]; one fresh seed of five collapsing is what a
    config failing one run in five shows, and the test says so (p = 5/10: half the splits hold the collapsed seed)."""
    capped = ConfigStats(3, 500.0, (1, 2, 3, 4, 5), (500.0,) * 5)
    assert (capped.interval.low, capped.interval.high) == (500.0, 500.0)
    one_collapsed = outcome_with((500.0, 500.0, 135.5, 500.0, 500.0), capped)
    assert one_collapsed.shortfall_p == pytest.approx(0.5) and one_collapsed.reproduces
    assert "mean 427.10, below the 95% CI [500.00, 500.00]" in one_collapsed.rule
    all_collapsed = outcome_with((120.0, 135.5, 90.0, 200.0, 150.0), capped)
    assert all_collapsed.shortfall_p == pytest.approx(1 / 252) and not all_collapsed.reproduces


def test_the_kept_seed_is_chosen_on_other_episodes_than_it_is_reported_on(
    two_trials: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = two_trials
    calls: list[tuple[int, int, float]] = []
    real = Agent.evaluate

    def evaluate(self: Agent, episodes: int, *, seed: int) -> EvalStats:
        stats = real(self, episodes, seed=seed)
        calls.append((episodes, seed, stats.mean))
        return stats

    monkeypatch.setattr(Agent, "evaluate", evaluate)
    outcome = retrain_best(
        study_name="cartpole", storage=url, seeds=3, out=tmp_path / "a.pt", eval_episodes=7, eval_seed=4
    )
    assert outcome.selection_seed == selection_seed(4) != 4
    choosing, reporting = calls[0::2], calls[1::2]
    assert {(n, seed) for n, seed, _ in choosing} == {(SELECTION_EPISODES, selection_seed(4))}
    assert {(n, seed) for n, seed, _ in reporting} == {(7, 4)}
    assert [s.selection_return for s in outcome.seeds] == [mean for _, _, mean in choosing]
    assert [s.mean_return for s in outcome.seeds] == [mean for _, _, mean in reporting]
    assert outcome.best_seed == max(outcome.seeds, key=lambda s: s.selection_return).seed
    meta = load_agent(outcome.agent_path).metadata["retrain"]
    assert (meta["selection_episodes"], meta["selection_seed"], meta["eval_seed"]) == (SELECTION_EPISODES, 5, 4)


def bad_input_cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    (tmp_path / "dir.pt").mkdir()
    return [
        (["--study-name", "nope"], r"study 'nope' not found in .*; studies there: cartpole, empty$"),
        (["--study-name", "empty"], r"study 'empty' has no complete trial \(1 trial\(s\) in other states\)"),
        (["--study-name", "cartpole", "--trial", "9"], r"trial 9 not found in study 'cartpole'; .* 0 to 2$"),
        (["--study-name", "cartpole", "--trial", "2"], r"trial 2 of study 'cartpole' is FAIL; only COMPLETE"),
        (["--study-name", "cartpole", "--out", str(blocker / "x.pt")], r"cannot write output path .*a-file/x\.pt"),
        (["--study-name", "cartpole", "--out", str(tmp_path / "dir.pt")], r"output path .*dir\.pt' is a directory"),
        (
            ["--study-name", "cartpole", "--retrain-seeds", "0"],
            r"argument --retrain-seeds: invalid value '0'; expected an integer from 1 to 1000",
        ),
        (
            ["--study-name", "cartpole", "--timesteps", "50"],
            r"timesteps = 50 is invalid for trial 1 .*expected an integer > its learning_starts \(100\)",
        ),
        (
            ["--study-name", "cartpole", "--trial", "x"],
            r"argument --trial: invalid value 'x'; expected a trial number, an integer >= 0",
        ),
        (["--study-name", "cartpole", "--out", "."], r"output path '\.' is a directory"),
        (["--study-name", "cartpole", "--out", "models/"], r"output path 'models/' is a directory"),
        (["--study-name", "cartpole", "--out", ""], r"argument --out: invalid value '': it is empty"),
        (
            ["--study-name", "cartpole", "--eval-seed", "-5"],
            r"argument --eval-seed: invalid value '-5'; expected an integer from 0 to 4294967295",
        ),
        (["--study-name", "cartpole", "--eval-seed", str(2**32)], r"argument --eval-seed: invalid value '4294967296'"),
        (["--study-name", ""], r"argument --study-name: invalid value '': it is empty \(an unset shell variable\?\)"),
        (
            ["--study-name", "x" * 1000],
            r"argument --study-name: invalid study name 'xxx.*\(1000 characters\); expected "
            r"at most 512 characters",
        ),
        (
            ["--study-name", "cartpole", "--retrain-seeds", str(10**9)],
            r"argument --retrain-seeds: invalid value '1000000000'",
        ),
        (["--study-name", "cartpole", "--device", "tpu"], r"argument --device: invalid choice: 'tpu' \(choose from"),
        *(
            []
            if torch.cuda.is_available()
            else [
                (
                    ["--study-name", "cartpole", "--device", "cuda"],
                    r"device = 'cuda' is invalid on this machine: torch sees "
                    r"no CUDA GPU",
                )
            ]
        ),
    ]


def test_bad_input_is_one_line_exit_2_and_leaves_the_storage_alone(
    tmp_path: Path, tiny_config: DQNConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    study = make_study(url)
    for value in (1.0, 2.0):
        trial = study.ask()
        store_config(trial, tiny_config)
        study.tell(trial, value)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    make_study(url, "empty").ask()
    before = digest(db)
    for args, message in bad_input_cases(tmp_path):
        out = ["--out", str(tmp_path / "never.pt")] if "--out" not in args else []
        assert main(["retrain", "--storage", url, *out, *args]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("dqn-tune: error: "), err
        assert re.search(message, err.rstrip("\n").removeprefix("dqn-tune: error: ")), err
    assert digest(db) == before
    assert not (tmp_path / "never.pt").exists()


def test_a_missing_storage_file_is_reported_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.db"
    assert (
        main(["retrain", "--study-name", "s", "--storage", f"sqlite:///{missing}", "--out", str(tmp_path / "a.pt")])
        == 2
    )
    assert "no SQLite database at" in capsys.readouterr().err
    assert not missing.exists()


@pytest.mark.slow
def test_a_tuned_and_retrained_agent_plays_as_its_file_says(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    budget = [
        "--timesteps",
        "3000",
        "--learning-starts",
        "200",
        "--hidden-sizes",
        "32,32",
        "--eval-freq",
        "1000",
        "--eval-curve-episodes",
        "2",
        "--eval-episodes",
        "5",
    ]
    assert (
        main(
            [
                "tune",
                "--study-name",
                "tiny",
                "--storage",
                url,
                "--trials",
                "2",
                "--trial-seeds",
                "1",
                "--no-artifacts",
                *budget,
            ]
        )
        == 0
    )
    study = optuna.load_study(study_name="tiny", storage=url)
    out = tmp_path / "models" / "tiny.pt"

    assert main(["retrain", "--study-name", "tiny", "--storage", url, "--retrain-seeds", "2", "--out", str(out)]) == 0

    agent = load_agent(out)
    assert agent.env_id == "CartPole-v1" and agent.metadata["trial_number"] == study.best_trial.number
    assert agent.config == records.trial_config(study.best_trial)
    kept = next(s for s in agent.metadata["retrain"]["seeds"] if s["seed"] == agent.metadata["retrain"]["best_seed"])
    stats = agent.evaluate(100, seed=0)
    assert stats.mean == kept["mean_return"] and stats.std == kept["std_return"]
    assert kept["selection_return"] == max(s["selection_return"] for s in agent.metadata["retrain"]["seeds"])
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    assert f"mean return {stats.mean:.2f} +- {stats.std:.2f} over 100 episodes" in capsys.readouterr().out
    summary = (tmp_path / "models" / "tiny_summary.md").read_text()
    assert f"| trial {study.best_trial.number} (tuning) |" in summary and f"{study.best_value:.2f}" in summary
    assert "trial value (final)" in summary
