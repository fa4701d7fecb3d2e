#!/usr/bin/env bash
# Common Voice recipe (any language): a ~33 M-parameter streaming Conformer with the shared Transformer
# decoder, trained on one or more GPUs. README.md has the corpus layout, hardware and multi-node use.
#   ./run.sh --src /data/cv-corpus-17.0-2024-03-15/en          all stages
#   ./run.sh --stage 0 --stop-stage 0 --workers 16              only the manifests (and mp3 -> FLAC)
#   ./run.sh --stage 2 --stop-stage 2 --nproc-per-node 4        only training, on 4 GPUs
cd "$(dirname "$0")"
src=/data/cv-corpus/en  # a language folder (clips/, train.tsv, dev.tsv, test.tsv) or a release holding one
data=data               # manifests (and, with convert, the FLAC files) go here
language=""             # corpus language (en, de, ru, zh-CN, ...); empty = the language folder's name
convert=true            # decode the mp3 clips once to 16 kHz FLAC in $data/audio (mp3 is slow to train on)
workers=$(nproc)        # conversion processes
conf=conf/conformer.yaml
exp=exp/conformer
bpe_units=""            # SentencePiece vocabulary size; empty = tokenizer.vocab_size of $conf
nproc_per_node=1        # GPUs on this machine; > 1 (or nnodes > 1) trains under torchrun (DDP)
nnodes=1                # machines; run stage 2 on each with its own node_rank
node_rank=0
master_addr=127.0.0.1   # address of the node_rank 0 machine
master_port=29500
extra=""                # extra arguments for 'train', e.g. "--set optim.warmup_steps=8000"
average=10              # best checkpoints (by dev WER) averaged
test_sets="test"        # manifests in $data to evaluate
decoding=all            # ctc_greedy, ctc_prefix_beam, attention, rescoring, a comma list, or all
chunk_sizes="0 16"      # 0 = full context; 16 frames = 640 ms streaming chunks
eval_workers=4          # feature-extraction processes for evaluate
source ../common.sh "$@"

check_launch_args

case "$convert" in
  true) convert_args=(--convert) ;;
  false) convert_args=() ;;
  *) echo "error: --convert takes true or false, got '$convert'" >&2; exit 2 ;;
esac

if run_stage 0 "manifests from $src into $data/ (convert: $convert)"; then
  lang_args=()
  if [ -n "$language" ]; then lang_args=(--language "$language"); fi
  s2s-media prepare commonvoice "$src" "$data" "${convert_args[@]}" --workers "$workers" "${lang_args[@]}"
fi

# the tokenizer and the model take the language the manifests were prepared in (tokenizer.language)
if [ -z "$language" ] && [ -s "$data/train.jsonl" ]; then
  language=$(head -n 1 "$data/train.jsonl" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("language", "en"))')
fi

asr_stages_1_to_4
