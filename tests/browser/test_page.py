"""The microphone page in a real browser: headless Chromium (driven by playwright-core) with a fake
microphone playing espeak-ng speech streams to the real server and shows partials and finals."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import subprocs
import soundfile as sf

from s2s_media.frontend.audio import SAMPLE_RATE, load_audio
from server_fixtures import make_tiny_checkpoint, start_server, tiny_recognizer

DRIVER = Path(__file__).with_name("drive_page.cjs")
NODE_DIR = Path(os.environ.get("S2S_MEDIA_NODE_DIR", Path.home() / ".cache/s2s-media/node"))


def browser_tools() -> tuple[str, str, Path]:
    """node, chromium and playwright-core, or a failure saying how to install them."""
    node, chromium = shutil.which("node"), shutil.which("chromium")
    playwright = NODE_DIR / "node_modules/playwright-core"
    missing = [name for name, ok in [("node", node), ("chromium", chromium),
                                     (f"playwright-core in {NODE_DIR}", playwright.is_dir())] if not ok]
    if missing:
        pytest.fail(f"browser test needs {', '.join(missing)}: run scripts/setup.sh")
    return node, chromium, playwright


@pytest.fixture(scope="module")
def fake_microphone(tiny_corpus, tmp_path_factory) -> Path:
    """A wav for Chromium's fake capture device: three espeak-ng utterances with pauses."""
    gap = np.zeros(SAMPLE_RATE // 2, np.float32)
    parts = [x for i in range(3) for x in (load_audio(tiny_corpus / f"wav/u0{i}.wav"), gap)]
    path = tmp_path_factory.mktemp("browser") / "mic.wav"
    sf.write(path, np.concatenate(parts), SAMPLE_RATE, subtype="PCM_16")
    return path


def test_page_streams_the_microphone(fake_microphone, tmp_path, one_thread):
    node, chromium, playwright = browser_tools()
    srv = start_server(tiny_recognizer(make_tiny_checkpoint(tmp_path / "tiny.pt")))
    try:
        run = subprocs.run([node, str(DRIVER), str(playwright), chromium, srv.url("/", "http"),
                            str(fake_microphone), "60"], timeout=180)
        assert run.returncode == 0, run.stderr[-2000:]
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert "failure" not in result, result
        assert result["partials"] and any(t.strip() for t in result["partials"]), result
        assert result["finals"] and all(line.strip() for line in result["finals"]), result
        assert result["status"] == "done" and not result["errors"], result
        assert srv.metric("s2s_audio_seconds_total") > 1.0
        assert srv.metric("s2s_sessions_total") == 1
        assert srv.metric('s2s_errors_total{code="bad_request"}') == 0
    finally:
        srv.stop()
