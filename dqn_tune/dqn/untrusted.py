"""Checks of what a file from disk (an agent file, a config file) asks for, before anything is built or imported.

`torch.load(weights_only=True)` and `tomllib` run no code from a file, but the values they return
still decide what the loader allocates and what `gym.make` imports: a tensor view with stride 0
claims gigabytes over one stored number, and an env id 'module:Env' makes gymnasium import that
module (from the current folder too). These checks refuse both, each with one line.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from dqn_tune.errors import AgentFileError, DQNTuneError, EnvError, shown


def load_torch_archive(source: Path, *, kind: str, error: type[DQNTuneError], name: str | None = None) -> object:
    """What `torch.load(weights_only=True)` reads from the file `source`, after checking it is a plain torch archive.

    torch.save writes an uncompressed zip; refusing anything else first keeps torch from inflating
    a compressed member (a small file that unpacks to gigabytes) and from warning about pickles.
    Any failure is one line of `error` naming the file as a dqn-tune `kind` (e.g. "agent file").
    """
    name = name or repr(str(source))
    unreadable = f"{name} is not a readable dqn-tune {kind}"
    try:
        with source.open("rb") as handle:
            try:
                members = zipfile.ZipFile(handle).infolist()
            except (zipfile.BadZipFile, ValueError, EOFError) as exc:
                reason = (
                    "it is empty"
                    if source.stat().st_size == 0
                    else ("it is not a torch zip archive (truncated, or another format such as a plain pickle)")
                )
                raise error(f"{unreadable}: {reason}") from exc
            if any(m.compress_type != zipfile.ZIP_STORED or m.compress_size != m.file_size for m in members):
                raise error(f"{unreadable}: it has compressed members; torch.save writes none")
            handle.seek(0)
            with warnings.catch_warnings():  # torch warns about odd pickle protocols just before refusing them
                warnings.simplefilter("ignore")
                return torch.load(handle, map_location="cpu", weights_only=True)
    except error:
        raise
    except OSError as exc:
        raise error(f"cannot read {kind} {name}: {exc.strerror or exc}") from exc
    except pickle.UnpicklingError as exc:
        raise error(
            f"{unreadable}: it holds objects other than tensors and plain data, which are never unpickled"
        ) from exc
    except Exception as exc:  # torch raises many types for a damaged archive; all mean the same to the user
        raise error(f"{unreadable}: damaged torch archive ({type(exc).__name__})") from exc


def check_tensors_stored(tensors: Mapping[object, object], *, source: str) -> None:
    """Raise AgentFileError unless the file's own bytes back every tensor of `tensors` (other values are left to
    the caller), so that a network built from them is never larger than what was read: each tensor's storage holds
    all of its elements past its offset, and all the tensors together claim no more bytes than their storages hold
    (views sharing one storage count once). `source` begins the message, e.g. "'agent.pt' is a damaged ... file"."""
    claimed = 0
    storages: dict[int, int] = {}
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
            continue
        needed = tensor.numel() * tensor.element_size()
        storage = tensor.untyped_storage()
        held = storage.nbytes() - tensor.storage_offset() * tensor.element_size()
        if needed > held:
            raise AgentFileError(
                f"{source}: tensor {shown(name)} of shape {list(tensor.shape)} needs {needed} bytes "
                f"and the file holds {max(held, 0)} of them (a view with stride 0?); nothing is "
                "built from it"
            )
        storages[storage.data_ptr()] = storage.nbytes()
        claimed += needed
    if claimed > sum(storages.values()):
        raise AgentFileError(
            f"{source}: its tensors claim {claimed} bytes over {sum(storages.values())} stored "
            "(views overlapping in one storage); nothing is built from it"
        )


def check_env_id_imports_nothing(env_id: str, *, source: str, flag: str = "--env") -> None:
    """Raise EnvError if `env_id` has gymnasium's 'module:Env' form, with which `gym.make` imports that module: a file
    never decides what code runs. `source` names the file (e.g. "agent file 'a.pt'"); the message tells how the user
    names the env instead (`flag`), which is how a trusted module gets imported."""
    module, colon, _ = env_id.partition(":")
    if colon:
        raise EnvError(
            f"{source} names env {shown(env_id)}, which would import the Python module {shown(module)}; a "
            f"file never decides what code runs: if you trust that module, name the env yourself with "
            f"{flag} {env_id}"
        )
