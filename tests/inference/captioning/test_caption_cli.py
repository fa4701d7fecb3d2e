"""``s2s-media caption`` and ``s2s-media evaluate`` on a caption manifest."""
from __future__ import annotations

import csv
import json
import re

import pytest

from s2s_media.caption_metrics import score_captions
from s2s_media.cli.main import main


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_happy_path_writes_one_record_per_image(caption_ckpt, good_images, tmp_path, capsys, one_thread):
    out = tmp_path / "captions.jsonl"
    code = main(["caption", str(tmp_path / "good"), "--model", str(caption_ckpt), "--out", str(out),
                 "--beam", "2", "--batch-size", "3", "--workers", "2"])
    assert code == 0, capsys.readouterr().err
    recs = _jsonl(out)
    assert [r["path"] for r in recs] == sorted(str(p) for p in good_images.values())
    for r in recs:  # every awkward-but-valid kind was converted and captioned
        assert set(r) == {"path", "caption", "score"} and r["caption"], r
    assert f"{len(recs)} images" in capsys.readouterr().out


def test_bad_files_get_error_records_and_exit_code_1(caption_ckpt, mixed_images, tmp_path, capsys, one_thread):
    folder, good, bad = mixed_images
    out = tmp_path / "out.jsonl"
    code = main(["caption", str(folder), str(tmp_path / "missing.jpg"), "--model", str(caption_ckpt),
                 "--out", str(out), "--batch-size", "4"])
    assert code == 1
    recs = {r["path"]: r for r in _jsonl(out)}
    assert len(recs) == len(good) + len(bad) + 1  # readme.txt in the folder is not an image: skipped
    for p in good.values():
        assert "caption" in recs[str(p)]
    expected = {"truncated": "truncated", "corrupt": "not an image", "not_an_image": "not an image",
                "empty": "not an image", "huge_png": "over the decode limit"}
    for kind, p in bad.items():
        assert expected[kind] in recs[str(p)]["error"], recs[str(p)]
    assert "no such file" in recs[str(tmp_path / "missing.jpg")]["error"]
    err = capsys.readouterr().err
    assert err.count("error: ") == len(bad) + 1


def test_resume_skips_done_images_and_refuses_to_overwrite(caption_ckpt, good_images, tmp_path, capsys, one_thread):
    first = [good_images["rgb_png"], good_images["gray"]]
    out = tmp_path / "r.jsonl"
    assert main(["caption", *map(str, first), "--model", str(caption_ckpt), "--out", str(out)]) == 0
    before = _jsonl(out)
    everything = [*first, good_images["cmyk"]]
    assert main(["caption", *map(str, everything), "--model", str(caption_ckpt), "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["caption", *map(str, everything), "--model", str(caption_ckpt), "--out", str(out), "--resume"]) == 0
    after = _jsonl(out)
    assert after[:2] == before and [r["path"] for r in after[2:]] == [str(good_images["cmyk"])]
    assert "resumed: 2 images" in capsys.readouterr().out


def test_csv_output_with_errors_and_resume(caption_ckpt, good_images, tmp_path, one_thread):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    out = tmp_path / "c.csv"
    args = ["caption", str(good_images["rgb_jpeg"]), str(bad), "--model", str(caption_ckpt), "--out", str(out)]
    assert main(args) == 1
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["path", "caption", "score", "error"]
    by = {r["path"]: r for r in rows}
    assert by[str(good_images["rgb_jpeg"])]["caption"] and float(by[str(good_images["rgb_jpeg"])]["score"]) < 0
    assert by[str(bad)]["error"] and not by[str(bad)]["caption"]
    done = _jsonl(tmp_path / "c.csv.done.jsonl")
    assert {d["path"] for d in done} == {str(good_images["rgb_jpeg"]), str(bad)}
    # resuming captions only the new image, keeps one header, and still reports the old failure as done
    assert main(args[:3] + [str(good_images["gray"])] + args[3:] + ["--resume"]) == 0
    rows = list(csv.DictReader(out.open()))  # the first run's rows (in path order), then the new one
    assert [r["path"] for r in rows] == sorted([str(good_images["rgb_jpeg"]), str(bad)]) + [str(good_images["gray"])]


def test_attention_maps_and_html_gallery(caption_ckpt, mixed_images, tmp_path, one_thread):
    folder, good, bad = mixed_images
    out, maps, page = tmp_path / "o.jsonl", tmp_path / "maps", tmp_path / "report" / "index.html"
    code = main(["caption", str(folder), "--model", str(caption_ckpt), "--out", str(out),
                 "--attention-maps", str(maps), "--html", str(page), "--batch-size", "4"])
    assert code == 1
    recs = {r["path"]: r for r in _jsonl(out)}
    html = page.read_text()
    for name, p in good.items():
        pngs = sorted((maps / p.stem).glob("*.png"))
        words = recs[str(p)]["caption"].split()
        assert len(pngs) == len(words) > 0, name
        assert [re.sub(r"^\d\d_", "", f.stem) for f in pngs] == words
        from PIL import Image
        with Image.open(pngs[0]) as im:
            assert im.mode == "RGB" and min(im.size) >= 64
        assert recs[str(p)]["caption"] in html
        assert f"../maps/{p.stem}/{pngs[0].name}" in html
    for p in bad.values():
        assert not (maps / p.stem).exists()
        assert recs[str(p)]["error"].split(":")[-1].strip()[:20] in html
    assert html.count('class="card"') == len(good) + len(bad)
    assert html.count("data:image/jpeg;base64,") == len(good)
    assert f"{len(good) + len(bad)} images, {len(bad)} failed" in html


def test_html_after_resume_covers_earlier_images(caption_ckpt, good_images, tmp_path, one_thread):
    out, page = tmp_path / "o.csv", tmp_path / "g.html"
    base = ["--model", str(caption_ckpt), "--out", str(out), "--html", str(page)]
    assert main(["caption", str(good_images["rgb_png"]), *base]) == 0
    assert main(["caption", str(good_images["rgb_png"]), str(good_images["gray"]), *base, "--resume"]) == 0
    html = page.read_text()
    assert html.count('class="card"') == 2 and str(good_images["rgb_png"]) in html


def test_usage_errors(caption_ckpt, speech_ckpt, good_images, tmp_path, capsys):
    img = str(good_images["rgb_png"])
    assert main(["caption", img, "--model", str(caption_ckpt), "--out", str(tmp_path / "x.docx")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    assert main(["caption", img, "--model", str(speech_ckpt)]) == 2
    assert "cannot caption images" in capsys.readouterr().err
    assert main(["caption", img, "--model", str(caption_ckpt), "--beam", "0"]) == 2
    assert "--beam 0" in capsys.readouterr().err


def test_evaluate_caption_manifest_reports_coco_metrics(caption_ckpt, caption_manifest, tmp_path, capsys, one_thread):
    out_dir = tmp_path / "eval"
    code = main(["evaluate", "--model", str(caption_ckpt), "--manifest", str(caption_manifest), "--split", "test",
                 "--out", str(out_dir), "--no-meteor", "--batch-size", "2"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    scores = printed["scores"]
    assert set(scores) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"}
    assert printed["images"] == 3 and printed["skipped"] == 0
    assert json.loads((out_dir / "scores.json").read_text()) == printed
    rows = _jsonl(out_dir / "captions.jsonl")
    assert [r["id"] for r in rows] == ["im0", "im1", "im2"]
    # the reported numbers are the metrics of the written captions against the manifest's references
    again = score_captions({r["id"]: r["caption"] for r in rows}, {r["id"]: r["refs"] for r in rows},
                           use_meteor=False)
    assert again == pytest.approx(scores)


def test_evaluate_caption_manifest_errors(caption_ckpt, caption_manifest, tmp_path, capsys):
    assert main(["evaluate", "--model", str(caption_ckpt), "--manifest", str(caption_manifest),
                 "--split", "val", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "no entries" in err and "test, train" in err
    (tmp_path / "manifest_images" / "im1.png").write_bytes(b"garbage")
    code = main(["evaluate", "--model", str(caption_ckpt), "--manifest", str(caption_manifest),
                 "--out", str(tmp_path / "e"), "--no-meteor"])
    assert code == 1  # one image skipped
    printed = json.loads(capsys.readouterr().out)
    assert printed["images"] == 3 and printed["skipped"] == 1 and "im1.png" in printed["errors"][0]
