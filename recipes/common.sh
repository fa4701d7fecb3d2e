# Shared by every recipes/*/run.sh: option parsing and stage selection (icefall style).
#   --stage N --stop-stage M   run stages N..M (inclusive)
#   any other --name value     sets the shell variable $name (dashes become underscores) if the recipe defines it
set -euo pipefail

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
