"""A Python environment in which torch cannot be imported, to test the runtime install.

:func:`torch_free_python` makes a virtual environment over this interpreter's packages
(``--system-site-packages``: numpy, onnxruntime, websockets, ... as installed) whose ``site-packages`` holds a
meta-path blocker: importing ``torch``, ``torchaudio`` or ``torchvision`` (or a submodule) raises
``ModuleNotFoundError``, as in an install without the ``train`` extra, and the attempt is appended to the file
named by ``$S2S_MEDIA_BLOCKED_LOG`` (one module name a line) so a test can tell that nothing even tried.
Creating it takes well under a second (no pip, nothing downloaded).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BLOCKED = ("torch", "torchaudio", "torchvision")

_BLOCKER = '''
import os, sys
from importlib.abc import MetaPathFinder

BLOCKED = {blocked!r}


class _NoTorch(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            log = os.environ.get("S2S_MEDIA_BLOCKED_LOG")
            if log:
                with open(log, "a") as f:
                    f.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: a runtime install)", name=name)
        return None


sys.meta_path.insert(0, _NoTorch())
'''


def torch_free_python(root: Path) -> Path:
    """The interpreter of a new torch-free environment in ``root`` (see the module docstring)."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    site = Path(purelib)
    (site / "_s2s_media_no_torch.py").write_text(_BLOCKER.format(blocked=BLOCKED))
    (site / "_s2s_media_no_torch.pth").write_text("import _s2s_media_no_torch\n")
    return python


def runtime_env(repo: Path, blocked_log: Path) -> dict[str, str]:
    """The environment for commands run with the torch-free interpreter: this checkout first on the path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), str(repo / "tests")]),
            "S2S_MEDIA_BLOCKED_LOG": str(blocked_log)}

