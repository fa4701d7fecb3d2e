"""Pictures users would rather look at than read: training curves, attention maps."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_curves(history: list[dict], path: str | Path) -> Path | None:
    """Train loss (and its CTC/attention parts), learning rate, throughput and dev WER against step."""
    train = [h for h in history if "loss" in h]
    dev = [h for h in history if "dev_wer" in h]
    if not train and not dev:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    for key in ("loss", "loss_ctc", "loss_att"):
        pts = [(h["step"], h[key]) for h in train if key in h]
        if pts:
            ax.plot(*zip(*pts), label=key)
    if dev:
        ax.plot([h["step"] for h in dev], [h["dev_loss"] for h in dev], "o-", label="dev loss")
    ax.set(xlabel="step", ylabel="loss", title="loss", yscale="log")
    ax.legend()
    ax = axes[1]
    if dev:
        ax.plot([h["step"] for h in dev], [100 * h["dev_wer"] for h in dev], "o-", color="C3")
    ax.set(xlabel="step", ylabel="WER %", title="dev WER (CTC greedy)")
    ax.grid(alpha=0.3)
    ax = axes[2]
    if train:
        ax.plot([h["step"] for h in train], [h["lr"] for h in train], color="C2")
        ax.set(xlabel="step", ylabel="learning rate", title="learning rate / throughput")
        tw = ax.twinx()
        tw.plot([h["step"] for h in train], [h["audio_s_per_s"] for h in train], color="C4", alpha=0.5)
        tw.set_ylabel("audio seconds per second")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
