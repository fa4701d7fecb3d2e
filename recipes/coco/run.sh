#!/usr/bin/env bash
# MS COCO captioning (Karpathy split) on GPUs: an ImageNet ResNet-50 grid encoder (weights from a
# local torchvision file) with the shared Transformer decoder; cross-entropy, then optional
# self-critical (CIDEr-D) fine-tuning. README.md has the corpus layout and the weights file.
#   ./run.sh --src /data/coco --weights /data/resnet50-11ad3fa6.pth           stages 0-4
#   ./run.sh --stage 2 --stop-stage 2 --nproc-per-node 4                      only training, 4 GPUs
#   ./run.sh --stage 5 --stop-stage 7                                         SCST, average, evaluate
cd "$(dirname "$0")"
stop_stage=${stop_stage:-4}   # stages 5-7 (SCST) run only when asked for
src=/data/coco          # holds train2014/, val2014/ and dataset_coco.json (or caption_datasets/dataset_coco.json)
weights=""              # torchvision ResNet-50 state_dict (.pth); empty = random init (not recommended)
data=data
conf=conf/resnet50_transformer.yaml
exp=exp/resnet50_transformer
scst_conf=conf/scst.yaml
scst_exp=exp/resnet50_transformer_scst
nproc_per_node=1        # GPUs on this machine; > 1 (or nnodes > 1) trains under torchrun (DDP)
nnodes=1
node_rank=0
master_addr=127.0.0.1
master_port=29500
average=5               # best checkpoints (by dev CIDEr-D) averaged
beam=3
extra=""                # extra arguments for 'train'
source ../common.sh "$@"

data_args=(--set data.caption_train="$data/train.jsonl" --set data.caption_dev="$data/val.jsonl")
weight_args=()
if [ -n "$weights" ]; then weight_args=(--set model.image_encoder_conf.weights="$weights"); fi

if run_stage 0 "manifests from $src (Karpathy split; restval -> train) into $data/"; then
  s2s-media prepare coco "$src" "$data"
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

if run_stage 4 "evaluate on the Karpathy test split (5000 images, beam $beam)"; then
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
