"""Progress bars that never mix with output: on stderr only, drawn only when stderr is a terminal.

When records go to stdout and stdout is that same terminal, no bar is drawn at all: a bar and a
record would share a line. Piped or redirected output never sees a bar.
"""
from __future__ import annotations

import sys
from typing import Iterable

from tqdm import tqdm


def progress_bar(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
                 records_on_stdout: bool = False, leave: bool = True) -> tqdm:
    """A tqdm bar on stderr; disabled unless stderr is a terminal (and, with ``records_on_stdout``,
    stdout is not one)."""
    disable = not sys.stderr.isatty() or (records_on_stdout and sys.stdout.isatty())
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable, leave=leave,
                mininterval=1.0, dynamic_ncols=True)


def duration_text(seconds: float) -> str:
    """``42.5 s``, ``12.3 min`` or ``1.50 h``: seconds below a minute, minutes below an hour."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
