"""Pictures users would rather look at than read: training curves, attention maps."""
from __future__ import annotations

from pathlib import Path



def plot_training_curves(history: list[dict], path: str | Path) -> Path | None:
    """Train loss (and its CTC/attention parts), learning rate, throughput and the dev metrics
    (WER for ASR, BLEU-4 and CIDEr-D for captioning) against step."""
    train = [h for h in history if "loss" in h]
    dev = [h for h in history if "dev_loss" in h]
    if not train and not dev:
        return None
    import matplotlib                    # loads slowly; only rank 0 draws, at the end of training
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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
    labels = {"dev_wer": "WER % (CTC greedy)", "dev_cer": "CER % (CTC greedy)", "dev_bleu4": "BLEU-4 x 100", "dev_cider_d": "CIDEr-D x 100"}
    for color, (key, label) in enumerate(labels.items(), start=3):
        pts = [(h["step"], 100 * h[key]) for h in dev if key in h]
        if pts:
            ax.plot(*zip(*pts), "o-", color=f"C{color}", label=label)
    ax.set(xlabel="step", ylabel="%", title="dev metrics")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.grid(alpha=0.3)
    ax = axes[2]
    if train:
        ax.plot([h["step"] for h in train], [h["lr"] for h in train], color="C2")
        ax.set(xlabel="step", ylabel="learning rate", title="learning rate / throughput")
        tw = ax.twinx()
        for color, (key, label) in enumerate({"audio_s_per_s": "audio seconds per second",
                                              "images_per_s": "images per second"}.items(), start=4):
            pts = [(h["step"], h[key]) for h in train if key in h]
            if pts:
                tw.plot(*zip(*pts), color=f"C{color}", alpha=0.5, label=label)
        tw.set_ylabel("throughput (per second)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
