"""The package's layers: every import points down (see README "How it fits together").

front-ends -> models -> decoding -> (data) -> inference | training -> api -> apps (cli, server)

Two checks: (1) every module imports on its own in a fresh interpreter state, so nothing depends
on what happened to be imported before it; (2) no module imports from a layer above its own, nor
inference from training or back, and no import hides inside a function (outside ``cli/``) except
the few listed in ``LAZY`` with their reason.
"""
from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# module prefix -> (rank, group); a module may import ranks <= its own, and within one rank only its own group
LAYERS = [
    ("s2s_media._deprecated", 0, "base"), ("s2s_media.errors", 0, "base"), ("s2s_media.typed", 0, "base"),
    ("s2s_media.jsonl", 0, "base"), ("s2s_media.checkpoint_io", 0, "base"), ("s2s_media.parallel", 0, "base"),
    ("s2s_media.device", 0, "base"), ("s2s_media.methods", 0, "base"), ("s2s_media.progress", 0, "base"),
    ("s2s_media.arrays", 0, "base"), ("s2s_media.extras", 0, "base"),
    ("s2s_media.frontend", 1, "front-ends"), ("s2s_media.text", 1, "front-ends"),
    ("s2s_media.metrics", 1, "front-ends"), ("s2s_media.caption_metrics", 1, "front-ends"),
    ("s2s_media.models", 2, "models"), ("s2s_media.config", 2, "models"),
    ("s2s_media.decoding", 3, "decoding"), ("s2s_media.lm", 3, "decoding"),
    ("s2s_media.data", 4, "data"),
    ("s2s_media.inference", 5, "inference"),
    ("s2s_media.training", 5, "training"), ("s2s_media.plots", 5, "training"),
    ("s2s_media.api", 6, "api"), ("s2s_media", 6, "api"),
    ("s2s_media.cli", 7, "apps"), ("server", 7, "apps"),
]

# function-level imports outside cli/ that stay, each for a reason given beside it
LAZY = {
    "s2s_media": "any submodule import runs the package's __init__ first: importing the API there would load "
                 "every layer (and torch) for `import s2s_media.errors`",
    "s2s_media.frontend.vision": "torchvision loads slowly; only image pipelines need its transforms",
    "s2s_media.frontend.audio": "librosa loads slowly (numba); only resampling and file decoding need it",
    "s2s_media.inference.onnx_runtime": "onnxruntime takes ~0.4 s to import; only opening an ONNX model needs it",
    "s2s_media.inference.onnx_export": "onnx and onnxruntime's quantiser are needed only by an int8 export",
    "s2s_media.text.tokenizer": "sentencepiece is needed only by SentencePiece tokenizers",
    "s2s_media.inference.streaming.features": "soxr is imported with the resampler that needs it",
    "s2s_media.inference.report": "matplotlib's colormaps are needed only when a gallery is drawn",
    "s2s_media.plots": "matplotlib loads slowly; only rank 0 draws, once, at the end of training",
    "s2s_media.training.trainer": "tensorboard loads slowly; only rank 0 writes logs",
    "s2s_media.data.tts_voices": "each TTS engine (onnxruntime, piper, hibari) is optional and heavy; a voice loads "
                                 "its own engine, once per worker, and a missing one is a one-line error",
    "s2s_media.data.speakers": "praat-parselmouth is needed only to perturb speakers while synthesising a corpus",
    "s2s_media.device": "torch is the train extra: only a torch model picks a device",
    "s2s_media.frontend.vad.silero": "onnxruntime takes ~0.4 s to import; only the Silero VAD needs it",
    "s2s_media.lm.files": "torch is the train extra: only an LM stored as a torch file (.pt) needs it to load",
}

# our modules that import torch (the train extra): the runtime path (``pip install s2s-media``, no torch)
# imports them inside the function that needs them, and only there
TRAIN_SIDE = {"s2s_media.inference.captioner", "s2s_media.models.registry", "s2s_media.models.punctuation",
              "s2s_media.device", "s2s_media.checkpoint_io"}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for root in ("s2s_media", "server"):
        for p in sorted((ROOT / root).rglob("*.py")):
            parts = p.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out.append((name, p))
    return out


def _is_shim(path: Path) -> bool:
    """A deprecated old path (``s2s_media._deprecated.moved``): it points up on purpose, for one release."""
    return "__getattr__ = moved(" in path.read_text()


def _layer(module: str) -> tuple[int, str]:
    best = max((p for p in LAYERS if module == p[0] or module.startswith(p[0] + ".")), key=lambda p: len(p[0]),
               default=None)
    assert best is not None, f"{module}: in no layer; add it to LAYERS in tests/test_layers.py"
    return best[1], best[2]


def _imports(tree: ast.AST) -> list[tuple[str, int, bool]]:
    """(module imported, line, inside a function) for every import of s2s_media or server."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            elif isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            else:
                names = []
            for n in names:
                if n.split(".")[0] in ("s2s_media", "server"):
                    found.append((n, child.lineno, in_function))
            visit(child, inner)
    visit(tree, False)
    return found


def test_every_import_points_down():
    bad = []
    for name, path in _modules():
        if _is_shim(path):
            continue
        rank, group = _layer(name)
        for target, line, _ in _imports(ast.parse(path.read_text())):
            t_rank, t_group = _layer(target)
            if t_rank > rank or (t_rank == rank and t_group != group):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {name} ({group}) imports {target} ({t_group})")
    assert not bad, "imports that point up or sideways:\n" + "\n".join(bad)


def test_no_hidden_imports_outside_cli():
    bad = []
    for name, path in _modules():
        if name.startswith("s2s_media.cli") or _is_shim(path):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if not isinstance(inner, (ast.Import, ast.ImportFrom)):
                        continue
                    target = inner.module if isinstance(inner, ast.ImportFrom) else inner.names[0].name
                    if target in TRAIN_SIDE:
                        continue
                    ours = (target or "").split(".")[0] in ("s2s_media", "server")
                    if name not in LAZY or (ours and name != "s2s_media"):   # LAZY excuses third-party packages
                        bad.append(f"{path.relative_to(ROOT)}:{inner.lineno}: import of {target} inside {node.name}()")
    assert not bad, ("imports inside functions (a layer leaking, or a cycle dodged); move them to the top, "
                     "or list the module in LAZY with the reason:\n" + "\n".join(bad))


def _ours() -> list[str]:
    return [m for m in sys.modules if m.split(".")[0] in ("s2s_media", "server")]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_every_module_imports_on_its_own():
    """Each module in a fresh interpreter state: every third-party package is loaded once first (they
    cannot hide an order dependency of ours), then each module is imported in a forked child in which
    no s2s_media or server module is loaded."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for name, _ in _modules():                      # loads the third-party packages they need
            try:
                __import__(name)
            except Exception:  # noqa: BLE001 - the child reports it
                pass
    failed, running, todo = [], {}, [name for name, _ in _modules()]
    while todo or running:
        while todo and len(running) < (os.cpu_count() or 1):     # the children run side by side
            name = todo.pop()
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:                                  # the child: forget our modules, import one
                os.close(r)
                msg = b""
                try:
                    for m in _ours():
                        del sys.modules[m]
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DeprecationWarning)
                        __import__(name)
                except BaseException as e:  # noqa: BLE001 - reported by the parent
                    msg = f"{type(e).__name__}: {e}".encode()[:2000]
                os.write(w, msg)
                os._exit(0)
            os.close(w)
            running[pid] = (name, r)
        pid, _ = os.wait()
        name, r = running.pop(pid)
        with os.fdopen(r, "rb") as f:
            msg = f.read()
        if msg:
            failed.append(f"{name}: {msg.decode()}")
    assert not failed, "modules that do not import on their own:\n" + "\n".join(failed)
