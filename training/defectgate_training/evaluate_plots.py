"""The plots `defectgate evaluate --plots DIR` writes: PR curves, the confusion matrix at the operating
thresholds, the part-level escape / overkill rates against one threshold for all classes, and, with a
part score, escape against overkill for both decisions with their operating points."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_plots(out: Path, names: list[str], curves: dict, sweep: dict, cm: np.ndarray,
                thresholds: dict[str, float], op: dict, by_score: tuple[dict, dict] | None = None) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = {}

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, (rec, prec, _) in curves.items():
        if len(rec):
            ax.plot(rec, np.flip(np.maximum.accumulate(np.flip(prec))), label=name)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="PR curves at IoU 0.5")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    files["pr_curves"] = _save(fig, out / "pr_curves.png")

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    labels = names + ["background"]
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set(xlabel="true", ylabel="predicted", title="confusion matrix (operating thresholds, IoU 0.5)")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    files["confusion_matrix"] = _save(fig, out / "confusion_matrix.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sweep["threshold"], sweep["escape_rate"], label="escape rate (NG parts passed)")
    if any(v is not None for v in sweep["overkill_rate"]):
        ax.plot(sweep["threshold"], [v if v is not None else np.nan for v in sweep["overkill_rate"]],
                label="overkill rate (OK parts rejected)")
    ax.set(xlabel="one confidence threshold for all classes", ylabel="rate", ylim=(0, 1.02),
           title=f"part level; calibrated: escape {op['escape_rate']}, overkill {op['overkill_rate']}")
    ax.legend(fontsize=8)
    files["escape_overkill"] = _save(fig, out / "escape_overkill_vs_threshold.png")
    if by_score is not None and any(v is not None for v in sweep["overkill_rate"]):
        files["escape_vs_overkill"] = _tradeoff(out, sweep, op, *by_score)
    return files


def _tradeoff(out: Path, sweep: dict, op: dict, score_sweep: dict, score_op: dict) -> str:
    """Escape against overkill: "any box" at one threshold for all classes, the part score at each of its
    thresholds, and where each decision's calibrated thresholds put the line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, sw, point in (("any box above one threshold", sweep, op), ("part score", score_sweep, score_op)):
        pts = [(o, e) for o, e in zip(sw["overkill_rate"], sw["escape_rate"]) if o is not None and e is not None]
        line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label)
        ax.plot([point["overkill_rate"]], [point["escape_rate"]], "o", color=line.get_color(),
                label=f"operating point: escape {point['escape_rate']}, overkill {point['overkill_rate']}")
    ax.set(xlabel="overkill rate (OK parts rejected)", ylabel="escape rate (NG parts passed)", xlim=(0, 1.0),
           ylim=(0, 0.3), title="part level: escape against overkill")
    ax.legend(fontsize=7)
    return _save(fig, out / "escape_vs_overkill.png")


def _save(fig, path: Path) -> str:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    tmp.replace(path)
    return str(path)
