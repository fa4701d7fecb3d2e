"""Progress bars stay off stdout and off anything that is not a terminal; durations read naturally."""
from __future__ import annotations

import io
import sys

import pytest

from s2s_media.progress import duration_text, progress_bar


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stderr_tty, stdout_tty, records_on_stdout, drawn", [
    (False, False, False, False),      # a log file or a pipe: no bar
    (True, False, True, True),         # records piped away, a terminal watching: a bar on stderr
    (True, True, True, False),         # records on the terminal itself: a bar would share their lines
    (True, True, False, True),         # records to a file: the terminal shows the bar
])
def test_bar_only_on_a_terminal_and_never_beside_records(monkeypatch, stderr_tty, stdout_tty, records_on_stdout,
                                                         drawn):
    err, out = (_Tty() if stderr_tty else io.StringIO()), (_Tty() if stdout_tty else io.StringIO())
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    with progress_bar(total=3, desc="working", records_on_stdout=records_on_stdout) as bar:
        for _ in range(3):
            bar.update(1)
    assert out.getvalue() == ""
    assert ("working" in err.getvalue()) is drawn


@pytest.mark.parametrize("seconds, text", [(0.0, "0.0 s"), (2.345, "2.3 s"), (59.9, "59.9 s"), (90, "1.5 min"),
                                           (3599, "60.0 min"), (5400, "1.50 h")])
def test_duration_text_uses_seconds_and_minutes_below_an_hour(seconds, text):
    assert duration_text(seconds) == text
