# Shared by every recipes/*/run.sh: option parsing, stage selection (icefall style), and the stages
# the twin recipes share (librispeech/commonvoice: asr_stages_1_to_4; coco/flickr8k:
# karpathy_caption_stages). A recipe's run.sh keeps only what is specific to its dataset.
#   --stage N --stop-stage M   run stages N..M (inclusive)
#   any other --name value     sets the shell variable $name (dashes become underscores) if the recipe defines it
set -euo pipefail

# The toolkit of this checkout, whichever copy pip installed (WeNet's path.sh does the same).
S2S_MEDIA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$S2S_MEDIA_ROOT${PYTHONPATH:+:$PYTHONPATH}"

stage=${stage:-0}
stop_stage=${stop_stage:-100}

while [ $# -gt 0 ]; do
  case "$1" in
    --*=*) name=${1%%=*}; value=${1#*=}; shift ;;
    --*) [ $# -ge 2 ] || { echo "error: option $1 needs a value" >&2; exit 2; }
         name=$1; value=$2; shift 2 ;;
    *) echo "error: unexpected argument '$1'; options are --name value" >&2; exit 2 ;;
  esac
  name=${name#--}; name=${name//-/_}
  if ! declare -p "$name" >/dev/null 2>&1; then
    echo "error: unknown option --${name//_/-} for $(basename "$0")" >&2; exit 2
  fi
  printf -v "$name" '%s' "$value"
done

log() { echo "[$(date +%H:%M:%S)] $(basename "$(pwd)") $*"; }

# run_stage N DESCRIPTION: true when stage N is selected, and logs it
run_stage() {
  if [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; then
    log "stage $1: $2"
    return 0
  fi
  return 1
}

# train_launcher: the command that runs 's2s-media ...' on $nnodes x $nproc_per_node processes
# (torchrun when more than one, so each process is one DDP rank), in the array "launch".
train_launcher() {
  if [ "${nproc_per_node:-1}" -gt 1 ] || [ "${nnodes:-1}" -gt 1 ]; then
    launch=(torchrun --nnodes "$nnodes" --node_rank "$node_rank" --nproc_per_node "$nproc_per_node"
            --master_addr "$master_addr" --master_port "$master_port" -m s2s_media.cli.main)
  else
    launch=(s2s-media)
  fi
}

# evaluate_test_sets: score $exp/avg_best_$average.pt on each of $test_sets found in $data, at each
# encoder chunk size in $chunk_sizes (0 = full context), into $exp/decode_<set>_chunk<N>/
evaluate_test_sets() {
  local test_set chunk
  for test_set in $test_sets; do
    if [ ! -f "$data/$test_set.jsonl" ]; then
      log "no $data/$test_set.jsonl; skipped"
      continue
    fi
    for chunk in $chunk_sizes; do
      s2s-media evaluate --model "$exp/avg_best_$average.pt" --manifest "$data/$test_set.jsonl" \
        --decoding "$decoding" --chunk-size "$chunk" --workers "$eval_workers" \
        --out "$exp/decode_${test_set}_chunk$chunk"
    done
  done
}

# check_launch_args: --nproc-per-node, --nnodes and --node-rank must be integers
check_launch_args() {
  local n
  for n in "$nproc_per_node" "$nnodes" "$node_rank"; do
    case "$n" in ''|*[!0-9]*) echo "error: --nproc-per-node, --nnodes and --node-rank take integers, got '$n'" >&2; exit 2 ;; esac
  done
}

# asr_stages_1_to_4: tokenizer, training, averaging and evaluation of the GPU speech recipes
# (librispeech, commonvoice) once stage 0 wrote $data/{train,dev}.jsonl; uses conf, exp, data,
# bpe_units, nnodes, nproc_per_node, extra, average, test_sets, chunk_sizes, decoding, eval_workers.
asr_stages_1_to_4() {
  local tok_args=() data_args
  if [ -n "$bpe_units" ]; then tok_args=(--set tokenizer.vocab_size="$bpe_units"); fi
  data_args=(--set train.exp_dir="$exp" --set data.train="$data/train.jsonl" --set data.dev="$data/dev.jsonl")

  if run_stage 1 "train the tokenizer on $data/train.jsonl"; then
    s2s-media tokenizer "$conf" "${data_args[@]}" "${tok_args[@]}"
  fi

  if run_stage 2 "train ($conf -> $exp) on $nnodes x $nproc_per_node process(es)"; then
    train_launcher
    # shellcheck disable=SC2086
    "${launch[@]}" train "$conf" "${data_args[@]}" "${tok_args[@]}" $extra
  fi

  if run_stage 3 "average the best $average checkpoints"; then
    s2s-media average "$exp" --best -n "$average" -o "$exp/avg_best_$average.pt"
  fi

  if run_stage 4 "evaluate on $test_sets (chunk sizes: $chunk_sizes)"; then
    evaluate_test_sets
  fi
}

# karpathy_caption_stages: the stages of the Karpathy-split captioning recipes (coco, flickr8k), with
# corpus (the preparer: coco, flickr8k, flickr30k), test_images, src, weights, data, conf, exp,
# scst_conf, scst_exp, average, beam and extra set by the recipe:
#   0 manifests  1 vocabulary  2 cross-entropy training  3 average  4 evaluate
#   5 self-critical training (CIDEr-D)  6 average  7 evaluate
karpathy_caption_stages() {
  data_args=(--set data.caption_train="$data/train.jsonl" --set data.caption_dev="$data/val.jsonl")
  weight_args=()
  if [ -n "$weights" ]; then weight_args=(--set model.image_encoder_conf.weights="$weights"); fi

  if run_stage 0 "manifests from $src (Karpathy split; restval -> train) into $data/"; then
    s2s-media prepare "$corpus" "$src" "$data"
  fi

  if run_stage 1 "word vocabulary (min_freq from $conf)"; then
    s2s-media tokenizer "$conf" --set train.exp_dir="$exp" "${data_args[@]}"
  fi

  if run_stage 2 "cross-entropy training ($conf -> $exp) on $nnodes x $nproc_per_node process(es)"; then
    train_launcher
    # shellcheck disable=SC2086
    "${launch[@]}" train "$conf" --set train.exp_dir="$exp" "${data_args[@]}" "${weight_args[@]}" $extra
  fi

  if run_stage 3 "average the best $average checkpoints"; then
    s2s-media average "$exp" --best -n "$average" -o "$exp/avg_best_$average.pt"
  fi

  if run_stage 4 "evaluate on the Karpathy test split ($test_images images, beam $beam)"; then
    s2s-media evaluate --model "$exp/avg_best_$average.pt" --manifest "$data/test.jsonl" --beam "$beam" \
      --out "$exp/decode_test"
  fi

  if run_stage 5 "self-critical training ($scst_conf -> $scst_exp) from $exp/avg_best_$average.pt"; then
    train_launcher
    # shellcheck disable=SC2086
    "${launch[@]}" train "$scst_conf" --set train.exp_dir="$scst_exp" --set train.init_from="$exp/avg_best_$average.pt" \
      --set tokenizer.path="$exp/tokenizer.pt" "${data_args[@]}" $extra
  fi

  if run_stage 6 "average the best $average SCST checkpoints"; then
    s2s-media average "$scst_exp" --best -n "$average" -o "$scst_exp/avg_best_$average.pt"
  fi

  if run_stage 7 "evaluate the SCST model on the test split"; then
    s2s-media evaluate --model "$scst_exp/avg_best_$average.pt" --manifest "$data/test.jsonl" --beam "$beam" \
      --out "$scst_exp/decode_test"
  fi
}
