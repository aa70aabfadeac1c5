"""Issue 11 item 12: a property over every subcommand's flags.

Any command line built from a subcommand's real flags (read from `build_parser()`, so a new flag is drawn
as soon as it exists) and awkward values (0, negatives, 2**63, 10**30, nan, inf, empty, whitespace, paths,
2000 characters, unicode, control characters) ends in exit 0, or in exit 2 with one line on stderr and
every file already there byte-identical. Never a traceback, never another exit status.

Every command stays cheap: the tiny budget flags come first (a drawn flag given later wins, as argparse
takes the last occurrence) and a drawn count above its cap (`CAPS`) is lowered to it, so a valid draw
trains for 300 steps at most. `--debug` is never drawn: it shows tracebacks on purpose. `dashboard` and
`storage-proxy` are drawn like the others with their serving loop replaced by a return: the flags are parsed, the
storage opened and the address bound (the parts that can fail), then the server closes instead of serving forever.

Each example runs in a fresh copy of a workspace made by dqn-tune itself (a two-trial study, a saved
agent, a config file), with the current directory inside it, so '../x' stays inside too.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import optuna
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dqn_tune.cli import COMMANDS, build_parser, main
from dqn_tune.dqn.config import DQNConfig
from tests.budgets import TINY_RUN

STUDY = "dqn-CartPole-v1"
DB = "study.db"
STORAGE = f"sqlite:///{DB}"
AGENT = "agent.pt"
CONFIG = "config.toml"
TINY = {
    "--timesteps": "300",
    "--learning-starts": "100",
    "--batch-size": "32",
    "--hidden-sizes": "16",
    "--eval-freq": "100",
    "--eval-curve-episodes": "1",
    "--eval-episodes": "1",
    "--trials": "1",
    "--trial-seeds": "1",
    "--retrain-seeds": "1",
    "--cell-seeds": "1",
    "--validate-top": "0",
    "--no-artifacts": None,
    "--workers": "1",
    "--episodes": "1",
    "--storage": STORAGE,
    "--port": "0",
}
"""The budget flags prepended to every command that accepts them (None: a flag without a value)."""
REQUIRED = {
    "retrain": ["--study-name", STUDY],
    "report": ["--study-name", STUDY],
    "validate": ["--validate-top", "1", "--validation-seeds", "2"],
    "ablate": ["--buffer-sizes", "1000", "--target-intervals", "10"],
}
"""Per command: what makes the plain command valid and cheap (validate needs 1 config and 2 seeds at least)."""
POSITIONAL = {"path": AGENT}
"""The value of each required positional argument when the draw leaves it out (optional ones are only drawn)."""
CAPS = {
    "total_timesteps": 300,
    "timesteps": 300,
    "trials": 1,
    "total_trials": 3,
    "trial_seeds": 2,
    "retrain_seeds": 2,
    "cell_seeds": 2,
    "eval_episodes": 2,
    "eval_curve_episodes": 2,
    "episodes": 2,
    "validate_top": 1,
    "validation_seeds": 2,
    "workers": 1,
    "gradient_steps": 4,
    "n_steps": 5,
}
"""Largest value of each count (by argparse dest) a drawn valid integer is lowered to: a valid draw stays cheap."""
FLOORS = {"eval_freq": 50}
"""Smallest positive value of each interval a drawn valid integer is raised to (fewer evaluations)."""
WRITERS = {"tune", "ablate", "validate", "retrain"}
"""Commands that add to the study storage when they succeed (trials, validation or ablation studies, attributes)."""
NEVER_DRAWN = {"--debug", "-h", "--help"}
"""--debug shows tracebacks on purpose; --help prints help and exits 0 (argparse's own path)."""

AWKWARD = [
    "0",
    "-1",
    "-7",
    "1",
    "2",
    "3",
    "16",
    "100",
    str(10**30),
    str(2**63),
    str(2**63 - 1),
    str(2**32),
    "0.5",
    "1e-3",
    "1.5",
    "-0.0",
    "1e309",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "",
    " ",
    "\t",
    "  \n",
    "../x",
    "/",
    ".",
    "..",
    "a/b",
    "/dev/null",
    "x" * 2000,
    "9" * 2000,
    "é",
    "日本語",
    "\U0001f600",
    "\x01\x1b[31m",
    "a\nb",
    "none",
    "None",
    "true",
    "huber",
    "mse",
    "CartPole-v1",
    "Pendulum-v1",
    "NoSuchEnv-v0",
    "1,2",
    "16,16",
    ",",
    "1,,2",
    "--",
    "-",
    "=",
    "'",
    '"',
    "%s",
    "{}",
    "\\",
    "clip.gif",
    "out.pt",
    "out.toml",
    AGENT,
    CONFIG,
    STUDY,
    STORAGE,
    "sqlite:///new.db",
    "sqlite:///missing/dir/x.db",
    "sqlite://",
    "sqlite:",
    "nosuchdialect://x",
    "sqlite:///" + "y" * 300,
]
"""Values drawn for every flag, whatever its type."""
TEXT = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=12)
"""Random short strings (argv cannot hold NUL or lone surrogates)."""


@dataclass(frozen=True)
class Flag:
    option: str | None
    """None for a positional argument."""
    dest: str
    takes_value: bool
    required: bool
    values: tuple[str, ...]
    """Values drawn for this flag besides AWKWARD and TEXT: its choices and its default."""


@functools.cache
def command_flags() -> dict[str, list[Flag]]:
    """Every subcommand's flags (each option string on its own: aliases and --no- forms too), from the real parser."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    defaults = {f.name: f.default for f in fields(DQNConfig)}
    table: dict[str, list[Flag]] = {}
    for name, sub in subparsers.choices.items():
        flags = []
        for action in sub._actions:
            extra = [str(c) for c in action.choices or ()]
            default = defaults.get(action.dest, action.default)
            if default not in (None, False, True) and not isinstance(default, tuple):
                extra.append(str(default))
            takes_value = action.nargs != 0
            for option in action.option_strings or [None]:
                if option not in NEVER_DRAWN:
                    flags.append(Flag(option, action.dest, takes_value, action.required, tuple(extra)))
        table[name] = flags
    return table


@st.composite
def command_lines(draw: st.DrawFn, command: str) -> list[str]:
    """argv of `command`: the cheap valid command, then drawn flags and values (capped, see CAPS)."""
    flags = command_flags()[command]
    accepted = {flag.option for flag in flags}
    argv = [command]
    for option, value in TINY.items():
        if option in accepted:
            argv += [option] if value is None else [option, value]
    argv += REQUIRED.get(command, [])
    positional = {flag.dest: POSITIONAL[flag.dest] for flag in flags if flag.option is None and flag.required}
    for flag in draw(st.lists(st.sampled_from(flags), max_size=4)):
        if not flag.takes_value:
            argv.append(flag.option)  # type: ignore[arg-type]
            continue
        own = [st.sampled_from(flag.values)] if flag.values else []  # its choices and default: often valid
        value = capped(flag.dest, draw(st.one_of(*own, st.sampled_from(AWKWARD), TEXT)))
        if flag.option is None:
            positional[flag.dest] = value
        elif draw(st.booleans()):
            argv.append(f"{flag.option}={value}")
        else:
            argv += [flag.option, value]
    return [argv[0], *positional.values(), *argv[1:]]


def capped(dest: str, value: str) -> str:
    """`value`, lowered to CAPS[dest] or raised to FLOORS[dest] when it is a valid integer beyond them."""
    try:
        number = int(value)
    except ValueError:
        return value
    if dest in CAPS and CAPS[dest] < number <= 2**63 - 1:
        return str(CAPS[dest])
    if dest in FLOORS and 0 < number < FLOORS[dest]:
        return str(FLOORS[dest])
    return value


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def trial_rows(db: Path) -> list[tuple[object, ...]]:
    """The study's trials as comparable rows (number, state, value, params, intermediate values)."""
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{db}")
    return [(t.number, t.state, t.value, t.params, t.intermediate_values) for t in study.trials]


@dataclass(frozen=True)
class Workspace:
    root: Path
    digests: dict[str, str]
    trials: list[tuple[object, ...]]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A two-trial study, a saved agent and a config file, each made by dqn-tune itself."""
    root = tmp_path_factory.mktemp("workspace")
    commands = [
        [
            "tune",
            "--trials",
            "2",
            "--storage",
            STORAGE,
            *TINY_RUN,
            "--validate-top",
            "0",
            "--trial-seeds",
            "1",
            "--no-artifacts",
            "--workers",
            "1",
        ],
        ["train", *TINY_RUN, "--out", AGENT],
        ["best", "--storage", STORAGE, "--study-name", STUDY, "--out", CONFIG],
    ]
    with inside(root), contextlib.redirect_stderr(io.StringIO()) as err:
        for argv in commands:
            assert main(argv) == 0, (argv, err.getvalue())
    names = sorted(p.name for p in root.iterdir() if p.is_file())
    return Workspace(root, {name: digest(root / name) for name in names}, trial_rows(root / DB))


@contextlib.contextmanager
def inside(directory: Path) -> Iterator[None]:
    """Run with `directory` as the current directory."""
    previous = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous)


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """`dashboard` and `storage-proxy` bind their address and return instead of serving forever."""
    from dqn_tune.cli import storage_proxy
    from dqn_tune.results.dashboard import DashboardServer

    monkeypatch.setattr(DashboardServer, "serve_forever", lambda self, poll_interval=0.5: None)
    monkeypatch.setattr(storage_proxy, "serve_until_stopped", lambda server: None)


def check_command(workspace: Workspace, capsys: pytest.CaptureFixture[str], command: str, argv: list[str]) -> None:
    """The property: exit 0, or exit 2 with one line and nothing already stored changed; never a traceback."""
    with tempfile.TemporaryDirectory(prefix="dqn_tune_property_") as scratch:
        cwd = Path(scratch) / "cwd"  # '../x' lands in scratch, removed with it
        shutil.copytree(workspace.root, cwd)
        capsys.readouterr()
        with inside(cwd):
            code = main(argv)
        err = capsys.readouterr().err
        event(f"{command} exit {code}")
        assert code in (0, 2), (code, argv, err)
        assert "Traceback" not in err, (argv, err)
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode), "/dev/null was replaced"
        changed = sorted(
            name
            for name, before in workspace.digests.items()
            if not (cwd / name).is_file() or digest(cwd / name) != before
        )
        if code == 2:
            assert err.count("\n") == 1 and err.startswith("dqn-tune: error: "), (argv, err)
            assert changed == [], (argv, err, changed)
            return
        if DB in changed:
            assert command in WRITERS, (argv, "wrote to the study storage")
            assert trial_rows(cwd / DB)[: len(workspace.trials)] == workspace.trials, argv
        named = set(argv) | {value.partition("=")[2] for value in argv}
        assert all(name in named for name in changed if name != DB), (argv, changed)


FAST = settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


"""Examples per subcommand in the default run (each subcommand is its own test: all are covered every run)."""


@pytest.mark.parametrize("command", COMMANDS)
@FAST
@given(data=st.data())
def test_any_command_line_exits_0_or_2_with_one_line_and_storage_intact(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], no_serving: None, command: str, data: st.DataObject
) -> None:
    check_command(workspace, capsys, command, data.draw(command_lines(command), label="argv"))


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
@settings(FAST, max_examples=8)
@given(data=st.data())
def test_any_command_line_many_examples(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], no_serving: None, command: str, data: st.DataObject
) -> None:
    check_command(workspace, capsys, command, data.draw(command_lines(command), label="argv"))


# Defects the property found, one regular test each.

TINY_TRAIN = ["train", *TINY_RUN]


def one_line(err: str, message: str) -> None:
    assert err.count("\n") == 1 and err.startswith("dqn-tune: error: ") and "Traceback" not in err, err
    assert message in err, err


def test_an_output_path_that_is_a_pipe_or_device_is_refused_not_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An atomic write (temp file + rename) over /dev/null would put a regular file in its place (as root);
    a FIFO shows the same without touching the machine."""
    from dqn_tune.errors import OutputPathError
    from dqn_tune.output_paths import check_writable

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert main([*TINY_TRAIN, "--out", str(fifo)]) == 2
    out, err = capsys.readouterr()
    one_line(err, f"output path '{fifo}' exists and is not a regular file (a device, pipe or socket)")
    assert "training" not in out and stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(OutputPathError, match="'/dev/null' exists and is not a regular file"):
        check_writable("/dev/null")


def test_an_output_name_too_long_is_one_line_before_any_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 2000-character name made Path.is_dir() raise OSError (a traceback); a 250-character one passed the check
    and failed at save time, after training (save_agent's temp name is longer than the name)."""
    for name in ("x" * 2000, "y" * 250):
        assert main([*TINY_TRAIN, "--out", str(tmp_path / name)]) == 2
        out, err = capsys.readouterr()
        one_line(err, ": File name too long")
        assert f"({len(str(tmp_path / name))} characters)" in err and "training" not in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("\x80", "--host = '\\x80' is invalid: expected a host name or IP address such as 127.0.0.1 or localhost"),
        (".", "--host = '.' is invalid"),
        ("x" * 64, "--host = 'xxxxxxxx"),
        ("a\nb", "cannot listen on 'a\\nb':0: "),
        ("", "argument --host: invalid value '': it is empty"),
    ],
)
def test_a_dashboard_host_that_cannot_be_used_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], host: str, message: str
) -> None:
    """'\\x80' raised TypeError and '.' UnicodeError from the socket (tracebacks); an empty host (an unset shell
    variable) listened on every interface; a newline split the error in two lines."""
    db = tmp_path / "empty.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="s")
    before = digest(db)
    assert main(["dashboard", "--storage", f"sqlite:///{db}", "--port", "0", "--host", host]) == 2
    one_line(capsys.readouterr().err, message)
    assert digest(db) == before


@pytest.mark.parametrize("command", ["validate", "presets"])
def test_an_empty_env_is_refused_not_read_as_the_default(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--env", " "]) == 2
    one_line(capsys.readouterr().err, "argument --env/--env-id: invalid value ' ': it is empty")


@pytest.mark.parametrize("argv", [["report", "--out-dir=--"], ["retrain", "--study-name=--"], ["tune", "--seed=--"]])
def test_a_lone_double_dash_as_a_flags_value_is_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """argparse drops a '--' value and stores an empty list that no type checks (found by the property test)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid value '--'; expected one value" in err
