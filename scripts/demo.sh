#!/usr/bin/env bash
# The README's main job on the embedded default: synthesise a few sentences the bundled model never
# trained on, read by speakers it never heard (the start of recipes/synthetic_speech's test split:
# voice families held out of training, espeak-ng and flite, and the neural voices with vocal-tract
# lengths that training never used), then transcribe them with the bundled model and print, for
# each, what was said beside what was heard, then WER per voice family, CER and the real-time factor.
#   bash scripts/demo.sh [N]     (default 12 utterances)
set -euo pipefail
n=${1:-12}
out=$(mktemp -d "${TMPDIR:-/tmp}/s2s-demo.XXXXXX")
trap 'rm -rf "$out"' EXIT
echo "== synthesising $n held-out test sentences (unseen sentences; unseen voices and speakers)"
# the recipe's text and seed: the first N of its test split (the plan deals test sentences first)
s2s-media prepare synthetic fortunes+wordnet "$out" --hours 0 --dev-utts 0 --test-utts "$n" --seed 0 \
  --workers "$(nproc)" >/dev/null
echo "== transcribing them with the bundled model (s2s_media/assets/asr_default.pt)"
s2s-media evaluate --manifest "$out/test.jsonl" --out "$out/decode" --show "$n"
