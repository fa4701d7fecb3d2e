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
corpus=coco
test_images=5000
source ../common.sh "$@"

karpathy_caption_stages
