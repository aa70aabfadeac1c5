#!/usr/bin/env bash
# The session-sized 1M-step MinAtar Breakout studies of docs/images.md, from tuning to the verdict, on 2 cores.
# ROUND (the first argument) is tf4 (one update every 4 env steps, 8 trials), tf1 (an update every step, each
# trial 3x the cost: only the 2 known points, about six hours of wall time on 2 cores) or rms (as tf1, with the
# reference's centered RMSprop and unclipped gradients, Double DQN, and 20-episode learning-curve points):
#   1. tune: trials of one seed at 1M steps, 2 at a time, with the median pruner, in the round's search space;
#      scripts/minatar_breakout_1m_ROUND.toml and the reference configuration are queued as known points;
#   2. validate the 2 best on 3 held-out seeds each and write the recommended config to $S/pick.toml;
#   3. train the pick on the 5 fresh seeds in two parts side by side and judge each on 100 greedy episodes;
#   4. compare it with the reference configuration's recorded 1M-step results (docs/data/).
# Each step resumes when the script is run again (the study from its SQLite file, a trial or a judged run
# from its last 50,000-step checkpoint, a judged seed is not run twice). Usage, from the repository root:
#   nohup nice -n 10 bash scripts/minatar_breakout_1m.sh rms > studies/minatar-1m-rms.log 2>&1 &
set -euo pipefail
ROUND=${1:-tf4}
case "$ROUND" in
  tf4) TRIALS=8 SPACE=tf4 FIXED=() ;;
  tf1) TRIALS=2 SPACE=tf1 FIXED=() ;;
  rms) TRIALS=2 SPACE=tf1 FIXED=(--optimizer rmsprop --max-grad-norm none --double-dqn --eval-curve-episodes 20) ;;
  *) echo "minatar_breakout_1m.sh: unknown round '$ROUND'; expected tf4, tf1 or rms" >&2; exit 2 ;;
esac
S=${S:-studies/minatar-1m-$ROUND}
ENV=MinAtar/Breakout-v1
STUDY=(--study-name "minatar-breakout-1m-$ROUND" --storage "sqlite:///$S/study.db")
mkdir -p "$S"

dqn-tune tune --env "$ENV" "${STUDY[@]}" --search-space "scripts/minatar_space_1m_$SPACE.toml" "${FIXED[@]}" \
  --timesteps 1000000 --eval-freq 100000 --eval-episodes 20 --trial-seeds 1 --workers 2 \
  --pruner median --checkpoint-every 50000 --total-trials "$TRIALS" --seed 41 \
  --validate-top 2 --validation-seeds 3 --artifact-dir "$S/artifacts" \
  --enqueue "scripts/minatar_breakout_1m_$ROUND.toml" --enqueue scripts/minatar_reference_1m.toml
dqn-tune best "${STUDY[@]}" --out "$S/pick.toml"

judge=(python scripts/minatar_quality.py --env "$ENV" --config "$S/pick.toml" --out-dir "$S")
"${judge[@]}" --part 1/2 & first=$!
"${judge[@]}" --part 2/2
wait "$first"

cp docs/data/minatar-1m/Breakout-v1-reference.jsonl "$S/"
python scripts/minatar_quality.py --env "$ENV" --compare reference pick --out-dir "$S"
