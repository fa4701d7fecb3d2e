#!/usr/bin/env bash
# Synthetic speech recipe: hibari and Piper (neural), festival, espeak-ng and flite voices read the
# Debian fortunes, as many perturbed speakers through simulated rooms, microphones, noise, telephone
# and codecs (bash ../../scripts/setup.sh installs them all); a streaming Conformer
# with the shared Transformer decoder learns to transcribe them. Runs end to end on a CPU.
#   ./run.sh                          all stages
#   ./run.sh --stage 2 --stop-stage 2 only training
#   ./run.sh --stage 5 --lm-weight 0.7 the bundled form: int8 with the LM and decoding defaults
#   ./run.sh --conf conf/conformer.yaml --exp exp/conformer --feats "" --nproc-per-node 1   the earlier recipe
cd "$(dirname "$0")"
text=fortunes+wordnet  # sentences: the Debian fortunes and WordNet's example sentences (apt wordnet-base)
hours=38.4          # synthetic training audio: every fortunes+wordnet train sentence read once (56.6k utterances)
dev_utts=400
test_utts=600
seed=0
data=data           # corpus folder
feats=data/feats    # log-mel feature cache (data.feature_cache); "" = none (waveform augmentation on the fly)
workers=$(nproc)
conf=conf/conformer_v3.yaml
exp=exp/conformer_v3
nproc_per_node=2    # DDP processes of one thread each (train.threads in $conf); 1 = a single process
nnodes=1
node_rank=0
master_addr=127.0.0.1
master_port=29500
average=3           # best checkpoints averaged (by dev WER)
decoding=all
lm_order=6          # character n-gram language model
beam=12             # decoding defaults stored in the export (stage 5): the LM weight and bonus are tuned on
lm_weight=0.9       # dev with ../../scripts/tune_lm.py, never on test (RESULTS.md)
lm_bonus=2.0
extra=""            # extra arguments for 's2s-media train', e.g. "--set train.max_minutes=10"
source ../common.sh "$@"

if run_stage 0 "synthesise the corpus ($hours h train; dev/test WER per voice family: s2s_media.data.voice_family) into $data/"; then
  s2s-media prepare synthetic "$text" "$data" --hours "$hours" --dev-utts "$dev_utts" \
    --test-utts "$test_utts" --seed "$seed" --workers "$workers"
fi

if run_stage 1 "train the tokenizer, a character $lm_order-gram LM on $text (dev/test sentences left out), and the feature cache $feats"; then
  s2s-media tokenizer "$conf" --set train.exp_dir="$exp" --set data.train="$data/train.jsonl"
  s2s-media lm "$text" --tokenizer "$exp/tokenizer.pt" -o "$exp/lm.pt" --order "$lm_order" \
    --exclude "$data/dev.jsonl" "$data/test.jsonl" --dev "$data/dev.jsonl"
  if [ -n "$feats" ]; then
    s2s-media features "$data/train.jsonl" "$data/dev.jsonl" "$data/test.jsonl" --cache "$feats" --workers "$workers"
  fi
fi

if run_stage 2 "train ($conf -> $exp) on $nproc_per_node process(es); resumes from $exp/last.pt"; then
  train_launcher
  # shellcheck disable=SC2086
  "${launch[@]}" train "$conf" --set train.exp_dir="$exp" --set data.feature_cache="$feats" \
    --set data.train="$data/train.jsonl" --set data.dev="$data/dev.jsonl" $extra
fi

if run_stage 3 "average the best $average checkpoints"; then
  s2s-media average "$exp" --best -n "$average" -o "$exp/avg_best_$average.pt"
fi

if run_stage 4 "evaluate on the test split (unseen voices, unseen sentences)"; then
  s2s-media evaluate --model "$exp/avg_best_$average.pt" --manifest "$data/test.jsonl" \
    --decoding "$decoding" --out "$exp/decode_test" --lm-weight 0
  s2s-media evaluate --model "$exp/avg_best_$average.pt" --manifest "$data/test.jsonl" \
    --decoding ctc_prefix_beam,rescoring --lm "$exp/lm.pt" --out "$exp/decode_test_lm"
fi

if run_stage 5 "export $exp/avg_best_$average.pt with int8 weights and the LM -> $exp/asr_default.pt (the bundled form)"; then
  s2s-media export "$exp/avg_best_$average.pt" "$exp/asr_default.pt" --weights int8 --lm "$exp/lm.pt" \
    --set decode.beam="$beam" --set decode.lm_weight="$lm_weight" --set decode.lm_bonus="$lm_bonus" \
    --set decode.batch_seconds=60
  log "calibrate its word confidences on dev (measured on test), then copy both files into s2s_media/assets:"
  log "  python ../../scripts/calibrate_confidence.py --model $exp/asr_default.pt --dev-manifest $data/dev.jsonl --test-manifest $data/test.jsonl --dev $dev_utts --test $test_utts --write"
fi
