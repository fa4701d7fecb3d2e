#!/usr/bin/env bash
# Punctuation and casing: a small dilated-convolution tagger learns to write normalised transcripts
# ("is it you") as text ("Is it you?") from the written text the speech corpus reads (the Debian
# fortunes and WordNet's example sentences), with the ASR corpus's dev and test sentences left out.
# One CPU thread, minutes; the result is bundled as s2s_media/assets/punct_default.pt.
#   ./run.sh                                   all stages
#   ./run.sh --asr-data /path/to/synthetic_speech/data   where the ASR corpus's dev/test manifests are
#   ./run.sh --stage 2 --stop-stage 2          only scoring
cd "$(dirname "$0")"
conf=conf/conv.yaml
exp=exp/conv
ft_conf=conf/conv_finetune.yaml   # goes on from $exp/punct.pt with the rarer marks weighted up
ft_exp=exp/conv_ft
asr_data=../synthetic_speech/data   # its dev.jsonl and test.jsonl stay out of training; "" = none
extra=""            # extra arguments for 's2s-media punctuation train', e.g. "--set train.epochs=1"
source ../common.sh "$@"

exclude="[]"
if [ -n "$asr_data" ]; then
  for f in "$asr_data/dev.jsonl" "$asr_data/test.jsonl"; do
    [ -f "$f" ] || { echo "error: $f not found: make the ASR corpus first (recipes/synthetic_speech stage 0) or pass --asr-data ''" >&2; exit 2; }
  done
  exclude="[$asr_data/dev.jsonl, $asr_data/test.jsonl]"
fi

if run_stage 0 "train ($conf -> $exp/punct.pt; held-out text in $exp/{dev,test}.txt; excluded: $exclude)"; then
  # shellcheck disable=SC2086
  s2s-media punctuation train "$conf" --set train.exp_dir="$exp" --set "data.exclude=$exclude" $extra
fi

if run_stage 1 "fine-tune ($ft_conf, from $exp/punct.pt -> $ft_exp/punct.pt)"; then
  # shellcheck disable=SC2086
  s2s-media punctuation train "$ft_conf" --set train.exp_dir="$ft_exp" --set train.init_from="$exp/punct.pt" \
    --set "data.exclude=$exclude" $extra
fi

if run_stage 2 "score $exp/punct.pt and $ft_exp/punct.pt on the held-out text$([ -n "$asr_data" ] && echo " and the ASR test transcripts")"; then
  for model in "$exp/punct.pt" "$ft_exp/punct.pt"; do
    s2s-media punctuation evaluate --model "$model" "$exp/test.txt" ${asr_data:+"$asr_data/test.jsonl"}
  done
fi

if run_stage 3 "bundle $ft_exp/punct.pt as ../../s2s_media/assets/punct_default.pt"; then
  cp "$ft_exp/punct.pt" ../../s2s_media/assets/.punct_default.pt.tmp
  mv ../../s2s_media/assets/.punct_default.pt.tmp ../../s2s_media/assets/punct_default.pt
fi
