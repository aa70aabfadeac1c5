"""The trial attributes the study runner itself writes and reads: who runs a trial, why it failed, what it retries.

The DQN study schema (configs, runs, settings) lives in tuning/records.py; these are the runner's own,
so the runner knows nothing of what its jobs train.
"""

from __future__ import annotations

FAIL_REASON = "fail_reason"
"""User attribute: why a trial failed or was pruned for a reason other than the pruner (e.g. divergence)."""
RETRY_OF = "failed_trial"
"""System attribute that RetryHeartbeatStaleTrialCallback sets on a retry (the original's number)."""
RETRY_HISTORY = "retry_history"
"""System attribute that RetryHeartbeatStaleTrialCallback sets on a retry: the trials it retries, oldest first."""
WORKER = "worker"
"""System attribute of a trial: the process that runs it, as 'host:pid' (its parent fails it at once if it dies)."""
CREATION = "creation"
"""System attribute of every trial a SharedStorage creates: a token unique to the call, by which a retried call
whose first answer was lost finds the trial that call created instead of creating a second one."""
