"""``s2s-media caption ... --ray``: the plain command's records, good and bad images alike, from Ray Data
on the local 2-CPU cluster of the ``ray_cluster`` fixture."""
from __future__ import annotations

import pytest

from s2s_media.cli.main import main


@pytest.mark.timeout(900)   # Ray starts worker processes that import torch: minutes on a busy machine
def test_caption_on_ray_gives_the_plain_records(ray_cluster, caption_ckpt, mixed_images, tmp_path, capsys):
    folder, good, bad = mixed_images
    plain, on_ray = tmp_path / "plain.jsonl", tmp_path / "ray.jsonl"
    common = ["caption", str(folder), "--model", str(caption_ckpt), "--beam", "2", "--batch-size", "3"]
    assert main([*common, "--out", str(plain)]) == 1                      # the bad images failed
    assert main([*common, "--out", str(on_ray), "--ray-batch", "4", "--ray"]) == 1
    assert on_ray.read_text() == plain.read_text()
    assert sum('"error"' in line for line in on_ray.read_text().splitlines()) == len(bad)
    assert main([*common, "--out", str(on_ray), "--attention-maps", str(tmp_path / "maps"), "--ray"]) == 2
    assert "--attention-maps does not run with --ray" in capsys.readouterr().err
