"""scripts/bench_step.py: per-update cost of config variants (a tiny model, two timed updates)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from fixtures_make import TINY_MODEL

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "recipes/synthetic_speech/conf/conformer_v3.yaml"
TINY = TINY_MODEL + ["model.encoder_conf.half_rate_blocks=[1,2]"]     # 2 blocks: the second at half rate


def _bench_step():
    spec = importlib.util.spec_from_file_location("bench_step", ROOT / "scripts/bench_step.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_variants_change_the_model_and_the_batch():
    bench = _bench_step()
    small = bench.step_cost(str(CONF), TINY, utt_seconds=2.0, chars_per_second=10, steps=2)
    bigger = bench.step_cost(str(CONF), TINY + ["model.decoder_conf.n_layers=2", "data.max_batch_seconds=16"],
                             utt_seconds=2.0, chars_per_second=10, steps=2)
    assert small["batch"] == "4 x 2 s" and bigger["batch"] == "8 x 2 s"
    assert bigger["params_m"] > small["params_m"]
    assert small["ms_per_30s"] > 0 and bigger["ms_per_30s"] > 0


def test_markdown_table(capsys):
    assert _bench_step().main([str(CONF), "--variant", " ".join(TINY), "--steps", "1",
                               "--utt-seconds", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| variant |") and len(lines) == 3 and lines[2].count("|") == 5
