"""The generic study runner: run any job's Optuna trials in worker processes against a shared storage.

It knows nothing of DQN: a job (tuning/) says how to create its study and what a trial runs; the runner
opens the storage, asks trials exclusively, runs them under heartbeats, tells them, and handles dead
workers and stop signals. run.py is the entry point (`run_job`).
"""
