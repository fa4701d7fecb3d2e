#!/usr/bin/env bash
# The README's main job on the embedded default: synthesise a few held-out sentences with voices
# the bundled model never heard (the first utterances of recipes/synthetic_speech's test split:
# held-out espeak-ng voice families and a held-out flite voice, reading sentences kept out of
# training), then transcribe them with the bundled model, printing each transcript, the WER and
# the real-time factor.
#   bash scripts/demo.sh [N]     (default 8 utterances)
set -euo pipefail
n=${1:-8}
out=$(mktemp -d "${TMPDIR:-/tmp}/s2s-demo.XXXXXX")
trap 'rm -rf "$out"' EXIT
s2s-media prepare synthetic fortunes "$out" --hours 0 --dev-utts 0 --test-utts "$n" --seed 0 --workers "$(nproc)"
echo "== transcribing $n held-out utterances with the bundled model (s2s_media/assets/asr_default.pt)"
s2s-media transcribe "$out/test.jsonl" --format tsv
