#!/usr/bin/env bash
# Synthetic multimodal recipe: ONE model learns ASR (synthetic speech) and captioning (synthetic
# shapes): a Conformer audio encoder and a ResNet-18 grid encoder feed one Transformer decoder; the
# <asr>/<caption> task token in the decoder prefix picks the task. One checkpoint does both.
#   ./run.sh                                   all stages (the corpora are generated if missing)
#   ./run.sh --stage 3 --stop-stage 3          only training
#   ./run.sh --extra "--set train.max_minutes=10"
cd "$(dirname "$0")"
speech=../synthetic_speech/data     # the synthetic speech corpus (stage 0 makes it if missing)
shapes=../synthetic_shapes/data     # the synthetic shapes corpus (stage 1 makes it if missing)
hours=10
train_images=20000
seed=0
workers=$(nproc)
conf=conf/multimodal.yaml
exp=exp/multimodal
average=5
decoding=attention,rescoring
beam=3
extra=""
source ../common.sh "$@"

data_args=(--set data.train="$speech/train.jsonl" --set data.dev="$speech/dev.jsonl"
           --set data.caption_train="$shapes/train.jsonl" --set data.caption_dev="$shapes/val.jsonl")

if run_stage 0 "synthetic speech corpus in $speech"; then
  if [ -f "$speech/train.jsonl" ]; then log "$speech/train.jsonl exists; kept"
  else s2s-media prepare synthetic fortunes "$speech" --hours "$hours" --seed "$seed" --workers "$workers"; fi
fi

if run_stage 1 "synthetic shapes corpus in $shapes"; then
  if [ -f "$shapes/train.jsonl" ]; then log "$shapes/train.jsonl exists; kept"
  else s2s-media prepare synthetic_shapes "$shapes" --train "$train_images" --seed "$seed" --workers "$workers"; fi
fi

if run_stage 2 "train the tokenizer on transcripts and captions"; then
  s2s-media tokenizer "$conf" --set train.exp_dir="$exp" "${data_args[@]}"
fi

if run_stage 3 "train ($conf -> $exp): ASR and captioning batches interleaved"; then
  # shellcheck disable=SC2086
  s2s-media train "$conf" --set train.exp_dir="$exp" "${data_args[@]}" $extra
fi

if run_stage 4 "average the best $average checkpoints (by the mean dev loss of both tasks)"; then
  s2s-media average "$exp" --best -n "$average" -o "$exp/avg_best_$average.pt"
fi

if run_stage 5 "evaluate ASR on $speech/test.jsonl and captioning on $shapes/test.jsonl with the same checkpoint"; then
  s2s-media evaluate --model "$exp/avg_best_$average.pt" --manifest "$speech/test.jsonl" --decoding "$decoding" \
    --out "$exp/decode_speech_test"
  s2s-media evaluate --model "$exp/avg_best_$average.pt" --manifest "$shapes/test.jsonl" --beam "$beam" --no-meteor \
    --out "$exp/decode_shapes_test"
fi
