"""SharedStorage: Optuna's storage API over a database or a storage proxy, every call retried on transient errors,
with the coordinator (study lock, heartbeats) of the same storage.

Every storage call of a command goes through it (asking and telling trials, the objective's reports and
attributes, summaries, reports), so a database restart or a moment of "too many clients" costs a wait and
a line, not the command. Two calls need care, as their answer may be lost after they were carried out (a
proxy restarted after writing and before answering): a tell's retry that finds the trial finished in the
state it asked for counts it as done (never told twice), and a trial's creation is looked up by the token
it was created with before it is tried again (never created twice: an extra trial would stay RUNNING
without a worker).
"""

from __future__ import annotations

import abc
import copy
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState, create_trial

from dqn_tune.runner.attributes import CREATION
from dqn_tune.runner.coordination import Coordinator
from dqn_tune.runner.optuna_internals import trial_id
from dqn_tune.runner.retry import RetryPolicy, retried


class SharedStorage(BaseStorage):
    """`backend` (Optuna's cached RDBStorage or its gRPC proxy client) with retries and a coordinator."""

    def __init__(
        self,
        backend: BaseStorage,
        coordinator: Coordinator,
        *,
        url: str,
        retry: RetryPolicy,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.backend = backend
        self.coordinator = coordinator
        self.url = url
        """The URL it was opened with (messages show it through storage.public_url)."""
        self.retry = retry
        self._on_close = on_close

    def _retried(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.backend, name)
        return retried(lambda: method(*args, **kwargs), policy=self.retry, where=self.coordinator.where)

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        tries = 0

        def write() -> bool:
            nonlocal tries
            tries += 1
            try:
                return self.backend.set_trial_state_values(trial_id, state, values)
            except UpdateFinishedTrialError:
                if tries > 1 and self.backend.get_trial(trial_id).state == state:
                    return True  # the earlier try was written; only its answer was lost
                raise

        return retried(write, policy=self.retry, where=self.coordinator.where)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        template = copy.copy(template_trial) if template_trial is not None else create_trial(state=TrialState.RUNNING)
        token = uuid.uuid4().hex
        template.system_attrs = {**template.system_attrs, CREATION: token}
        tries = 0

        def create() -> int:
            nonlocal tries
            tries += 1
            if tries > 1:  # the earlier try may have created it; only its answer was lost
                for trial in self.backend.get_all_trials(study_id, deepcopy=False):
                    if trial.system_attrs.get(CREATION) == token:
                        return trial_id(trial)
            return self.backend.create_new_trial(study_id, template)

        return retried(create, policy=self.retry, where=self.coordinator.where)

    def remove_session(self) -> None:
        self.backend.remove_session()

    def close(self) -> None:
        """Close the connections (or channel) and the coordinator's."""
        self.coordinator.close()
        if self._on_close is not None:
            self._on_close()


def _delegate(name: str) -> Callable[..., Any]:
    def method(self: SharedStorage, *args: Any, **kwargs: Any) -> Any:
        return self._retried(name, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = getattr(BaseStorage, name).__doc__
    return method


# Every other public method of BaseStorage (abstract or not: the backend may do them better) is the backend's,
# retried; written as a loop rather than 27 one-line methods. Type checkers do not see methods set this way: to
# them SharedStorage stays abstract, hence the ignore[abstract] where it is constructed.
for _name in sorted(name for name in dir(BaseStorage) if not name.startswith("_") and name not in vars(SharedStorage)):
    setattr(SharedStorage, _name, _delegate(_name))
abc.update_abstractmethods(SharedStorage)  # type: ignore[type-abstract]
