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
