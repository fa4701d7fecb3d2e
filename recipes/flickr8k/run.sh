#!/usr/bin/env bash
# Flickr8k captioning (Karpathy split) on a GPU, Show, Attend and Tell style: a frozen ImageNet ResNet-50
# grid (weights from a local torchvision file) with the LSTM decoder and additive attention, the doubly
# stochastic attention penalty; then optional self-critical (CIDEr-D) fine-tuning. See README.md.
#   ./run.sh --src /data/flickr8k --weights /data/resnet50-11ad3fa6.pth           stages 0-4
#   ./run.sh --stage 2 --stop-stage 2 --nproc-per-node 4                      only training, 4 GPUs
#   ./run.sh --stage 5 --stop-stage 7                                         SCST, average, evaluate
cd "$(dirname "$0")"
stop_stage=${stop_stage:-4}   # stages 5-7 (SCST) run only when asked for
src=/data/flickr8k      # holds Flicker8k_Dataset/ (or Images/) and dataset_flickr8k.json
weights=""              # torchvision ResNet-50 state_dict (.pth); empty = random init (not recommended)
data=data
conf=conf/resnet50_lstm.yaml
exp=exp/resnet50_lstm
scst_conf=conf/scst.yaml
scst_exp=exp/resnet50_lstm_scst
nproc_per_node=1        # GPUs on this machine; > 1 (or nnodes > 1) trains under torchrun (DDP)
nnodes=1
node_rank=0
master_addr=127.0.0.1
master_port=29500
average=5               # best checkpoints (by dev CIDEr-D) averaged
beam=3
extra=""                # extra arguments for 'train'
corpus=flickr8k
test_images=1000
source ../common.sh "$@"

karpathy_caption_stages
