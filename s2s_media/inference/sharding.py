"""Sharding a run over processes: ``--shard I/N`` (or ``auto`` under torchrun), the rows each shard
takes, where each writes (``OUT.rankK``) and merging the parts (``--merge``), in one place.

Shards ``0/N .. N-1/N`` of the sorted input list together cover every input exactly once.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable, TypeVar

from s2s_media.errors import UserError
from s2s_media.inference.writers import _RANK_PART, SUBTITLES, TsvWriter, _write_atomic

T = TypeVar("T")


def parse_shard(spec: str | None) -> tuple[int, int, bool]:
    """``"I/N"`` -> (I, N, False); ``"auto"`` -> (RANK, WORLD_SIZE, True); None -> (0, 1, False)."""
    if not spec:
        return 0, 1, False
    if spec == "auto":
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise UserError("--shard auto: RANK and WORLD_SIZE are not set; launch with torchrun, or give --shard I/N")
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), True
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise UserError(f"--shard {spec}: expected I/N such as 0/4, or auto") from None
    if n < 1 or not 0 <= i < n:
        raise UserError(f"--shard {spec}: need 0 <= I < N")
    return i, n, False


def shard(items: list[T], index: int, count: int) -> list[T]:
    """Every ``count``-th item starting at ``index`` (0-based) of the sorted list."""
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {index}/{count}: need 0 <= I < N")
    return items[index::count]


def rank_path(out: str | Path, rank: int) -> Path:
    """Where rank ``rank`` writes when the final output is ``out``: ``OUT.rankK``."""
    return Path(f"{out}.rank{rank}")


def merge_outputs(parts: Iterable[str | Path], out: str | Path, fmt: str) -> int:
    """Merge the per-rank outputs ``OUT.rankK`` into ``out``; returns the number of parts merged.

    jsonl records are sorted by path (then id), the order the unsharded run writes; txt and tsv
    parts are concatenated in rank order (one tsv header); subtitle folders are combined. The
    ``.done.jsonl`` sidecars are merged too, so ``--resume`` works on the merged output.
    """
    paths = sorted((Path(p) for p in parts if _RANK_PART.search(str(p))),
                   key=lambda p: int(_RANK_PART.search(str(p)).group(0)[5:]))
    if not paths:
        raise UserError("--merge: no parts named OUT.rankK among the given paths (e.g. --merge out.jsonl.rank*)")
    for p in paths:
        if not p.exists():
            raise UserError(f"--merge: {p} not found")
    out = Path(out)
    if fmt in SUBTITLES and paths[0].is_dir():
        out.mkdir(parents=True, exist_ok=True)
        for p in paths:
            for f in p.rglob(f"*.{fmt}"):
                dest = out / f.relative_to(p)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest)
        _concat_lines([p / "done.jsonl" for p in paths], out / "done.jsonl")
        return len(paths)
    if fmt == "jsonl":
        rows = []
        for p in paths:
            rows += [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows.sort(key=lambda r: (r.get("path", ""), str(r.get("id", ""))))
        _write_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        return len(paths)
    if fmt in SUBTITLES:
        raise UserError(f"--merge: {fmt} parts are single subtitle files; merge works on subtitle folders")
    text = []
    for i, p in enumerate(paths):
        body = p.read_text(encoding="utf-8")
        if fmt == "tsv" and i and body.startswith(TsvWriter.HEADER):
            body = body[len(TsvWriter.HEADER):]
        text.append(body)
    _write_atomic(out, "".join(text))
    _concat_lines([Path(f"{p}.done.jsonl") for p in paths], Path(f"{out}.done.jsonl"))
    return len(paths)


def _concat_lines(srcs: list[Path], dest: Path) -> None:
    _write_atomic(dest, "".join(s.read_text(encoding="utf-8") for s in srcs if s.is_file()))
