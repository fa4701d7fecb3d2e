#!/usr/bin/env bash
# LibriSpeech recipe: a ~33 M-parameter streaming Conformer with the shared Transformer decoder,
# trained on one or more GPUs. README.md has the corpus layout, hardware and multi-node use.
#   ./run.sh --src /data/LibriSpeech                          all stages, every train-* subset (960 h)
#   ./run.sh --src /data/LibriSpeech --train-subsets train-clean-100 --bpe-units 500 \
#            --data data/100h --exp exp/conformer_100h        the 100 h set-up
#   ./run.sh --stage 2 --stop-stage 2 --nproc-per-node 4      only training, on 4 GPUs
#   ./run.sh --stage 4 --chunk-sizes "0 8 16"                 evaluate again, more chunk sizes
cd "$(dirname "$0")"
src=/data/LibriSpeech   # the LibriSpeech/ folder, or the folder that holds it
train_subsets=""        # e.g. "train-clean-100 train-clean-360"; empty = every train-* subset in $src
data=data               # manifests (and the subset links) go here
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
test_sets="test test_other"   # manifests in $data to evaluate: test-clean, test-other
decoding=all            # ctc_greedy, ctc_prefix_beam, attention, rescoring, a comma list, or all
chunk_sizes="0 16"      # 0 = full context; 16 frames = 640 ms streaming chunks
eval_workers=4          # feature-extraction processes for evaluate
source ../common.sh "$@"

check_launch_args

if run_stage 0 "manifests from $src${train_subsets:+ ($train_subsets)} into $data/"; then
  corpus=$src
  if [ -n "$train_subsets" ]; then
    # the preparer reads every train-* folder it finds, so point it at links to the chosen ones
    root=$src; [ -d "$src/LibriSpeech" ] && root=$src/LibriSpeech
    corpus=$data/subsets
    rm -rf "$corpus" && mkdir -p "$corpus"
    for subset in $train_subsets; do
      [ -d "$root/$subset" ] || { echo "error: $root/$subset not found (--train-subsets)" >&2; exit 1; }
      ln -s "$(realpath "$root/$subset")" "$corpus/$subset"
    done
    for dir in "$root"/dev-* "$root"/test-*; do
      if [ -d "$dir" ]; then ln -s "$(realpath "$dir")" "$corpus/$(basename "$dir")"; fi
    done
  fi
  s2s-media prepare librispeech "$corpus" "$data"
fi

asr_stages_1_to_4
