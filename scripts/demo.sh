#!/usr/bin/env bash
# The README's main job on the embedded default: synthesise a small corpus with espeak-ng and
# flite, train a small streaming Conformer for a few minutes, and transcribe the test split
# (unseen voices, unseen sentences), printing WER per decoding method.
#   bash scripts/demo.sh [MINUTES]     (default 5 minutes of training)
set -euo pipefail
minutes=${1:-5}
cd "$(dirname "$0")/../recipes/synthetic_speech"
./run.sh --data data/demo --hours 0.5 --dev-utts 60 --test-utts 60 --exp exp/demo --average 2 \
  --extra "--set train.max_minutes=$minutes --set train.valid_interval=50 --set train.valid_utterances=60"
