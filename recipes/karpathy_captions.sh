# The stages shared by the Karpathy-split captioning recipes (recipes/coco, recipes/flickr8k).
# Sourced by their run.sh after ../common.sh, with these set: corpus (the preparer: coco, flickr8k,
# flickr30k), test_images, src, weights, data, conf, exp, scst_conf, scst_exp, average, beam, extra.
#   0 manifests  1 vocabulary  2 cross-entropy training  3 average  4 evaluate
#   5 self-critical training (CIDEr-D)  6 average  7 evaluate

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
