#!/usr/bin/env bash
# Synthetic shapes captioning: scenes of coloured shapes with five captions each; a ResNet-18 grid
# encoder with the shared Transformer decoder learns to caption them on a CPU. Runs end to end.
#   ./run.sh                              stages 0-4: generate, tokenizer, train (60 min), average, evaluate
#   ./run.sh --stage 2 --stop-stage 2     only training
#   ./run.sh --stage 5 --stop-stage 7     self-critical (CIDEr-D) fine-tuning of the averaged model, then
#                                         average and evaluate it
#   ./run.sh --train-images 2000 --extra "--set train.max_minutes=5"   a quick look
cd "$(dirname "$0")"
stop_stage=${stop_stage:-4}   # stages 5-7 (SCST) run only when asked for
train_images=20000
val_images=500
test_images=1000
size=64               # image side in pixels (the config's data.image.size must match)
seed=0
data=data             # corpus folder
workers=$(nproc)
conf=conf/resnet_transformer.yaml
exp=exp/resnet_transformer
scst_conf=conf/scst.yaml
scst_exp=exp/resnet_transformer_scst
average=2             # best checkpoints (by dev CIDEr-D) averaged (2 beat 5 and 1: RESULTS.md)
beam=3
test_sets="test test_heldout"   # test_heldout: the test images holding a (colour, shape) pair unseen in training
extra=""              # extra arguments for 's2s-media train', e.g. "--set train.max_minutes=10"
source ../common.sh "$@"

data_args=(--set data.caption_train="$data/train.jsonl" --set data.caption_dev="$data/val.jsonl"
           --set data.image.size="$size")

# evaluate_captions CHECKPOINT OUT_PREFIX: caption metrics on each of $test_sets
evaluate_captions() {
  local test_set
  for test_set in $test_sets; do
    if [ ! -f "$data/$test_set.jsonl" ]; then log "no $data/$test_set.jsonl; skipped"; continue; fi
    s2s-media evaluate --model "$1" --manifest "$data/$test_set.jsonl" --beam "$beam" --no-meteor \
      --out "${2}_$test_set"
  done
}

if run_stage 0 "generate the corpus ($train_images/$val_images/$test_images images, ${size}px) into $data/"; then
  s2s-media prepare synthetic_shapes "$data" --train "$train_images" --val "$val_images" --test "$test_images" \
    --seed "$seed" --size "$size" --workers "$workers"
fi

if run_stage 1 "train the tokenizer"; then
  s2s-media tokenizer "$conf" --set train.exp_dir="$exp" "${data_args[@]}"
fi

if run_stage 2 "train ($conf -> $exp)"; then
  # shellcheck disable=SC2086
  s2s-media train "$conf" --set train.exp_dir="$exp" "${data_args[@]}" $extra
fi

if run_stage 3 "average the best $average checkpoints"; then
  s2s-media average "$exp" --best -n "$average" -o "$exp/avg_best_$average.pt"
fi

if run_stage 4 "evaluate on $test_sets (beam $beam)"; then
  evaluate_captions "$exp/avg_best_$average.pt" "$exp/decode"
fi

if run_stage 5 "self-critical training ($scst_conf -> $scst_exp) from $exp/avg_best_$average.pt"; then
  # shellcheck disable=SC2086
  s2s-media train "$scst_conf" --set train.exp_dir="$scst_exp" --set train.init_from="$exp/avg_best_$average.pt" \
    --set tokenizer.path="$exp/tokenizer.pt" "${data_args[@]}" $extra
fi

if run_stage 6 "average the best $average SCST checkpoints"; then
  s2s-media average "$scst_exp" --best -n "$average" -o "$scst_exp/avg_best_$average.pt"
fi

if run_stage 7 "evaluate the SCST model on $test_sets"; then
  evaluate_captions "$scst_exp/avg_best_$average.pt" "$scst_exp/decode"
fi
