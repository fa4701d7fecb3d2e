"""JSON Lines files: read with a ``file:line`` position for every object, write atomically."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

from s2s_media.errors import ManifestError


def iter_jsonl(path: str | Path) -> Iterator[tuple[str, object]]:
    """Yield ``("file:line", decoded_object)`` for each non-blank line; bad JSON raises ManifestError."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{where}: not valid JSON ({e.msg}); each line must be one JSON object") from None


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write dicts as JSONL atomically (temp file then rename). Returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n
