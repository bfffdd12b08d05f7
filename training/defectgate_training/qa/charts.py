"""Quality charts as RGB arrays (matplotlib, Agg, the bundled DejaVu font: nothing is fetched)."""

from __future__ import annotations

import numpy as np

from .quality import QualityReport

OK_COLOR, NG_COLOR = "#4c9f70", "#d1495b"


def load_pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display, no GUI backend probing
    import matplotlib.pyplot as plt

    return plt


def _to_rgb(fig) -> np.ndarray:
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    out = rgba[..., :3].copy()
    load_pyplot().close(fig)
    return out


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


def counts_chart(counts: dict[str, dict[str, int]], title: str) -> np.ndarray:
    """Stacked OK/NG bars per day or per shift, with the NG share printed on each bar."""
    plt = load_pyplot()
    keys = list(counts)[-14:]  # the last two weeks (or 14 shifts) stay readable
    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=100)
    if not keys:
        _empty(ax, "no parts in the archive yet")
    else:
        ok = np.array([counts[k]["OK"] for k in keys])
        ng = np.array([counts[k]["NG"] for k in keys])
        x = np.arange(len(keys))
        ax.bar(x, ok, color=OK_COLOR, label="OK")
        ax.bar(x, ng, bottom=ok, color=NG_COLOR, label="NG")
        for i, (o, n) in enumerate(zip(ok, ng)):
            if o + n:
                ax.text(i, o + n, f"{100 * n / (o + n):.0f}% NG", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, keys, rotation=30 if len(keys) > 3 else 0, ha="right" if len(keys) > 3 else "center",
                      fontsize=8)
        ax.set_ylabel("parts")
        ax.legend(loc="upper left", fontsize=8)
        ax.margins(y=0.15)
    ax.set_title(title)
    fig.tight_layout()
    return _to_rgb(fig)


def reasons_chart(reasons: dict[str, int]) -> np.ndarray:
    plt = load_pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=100)
    if not reasons:
        _empty(ax, "no rejects yet")
    else:
        items = list(reasons.items())[:10][::-1]
        ax.barh([k for k, _ in items], [v for _, v in items], color=NG_COLOR)
        for i, (_, v) in enumerate(items):
            ax.text(v, i, f" {v}", va="center", fontsize=8)
        ax.set_xlabel("rejected parts")
        ax.margins(x=0.12)
    ax.set_title("Reject reasons")
    fig.tight_layout()
    return _to_rgb(fig)


def confusion_chart(rep: QualityReport) -> np.ndarray:
    """Left: line verdict vs reviewer at part level. Right: model class vs reviewer class per box."""
    plt = load_pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.6, 3.8), dpi=100, gridspec_kw={"width_ratios": [1, 1.6]})
    m = np.array([[rep.confusion.get(a, {}).get(b, 0) for b in ("NG", "OK")] for a in ("NG", "OK")])
    _heatmap(a1, m, ["NG", "OK"], ["defect", "no defect"], "line verdict", "reviewer",
             "Parts: line vs reviewer", cell_names=[["confirmed", "false reject"], ["escape", "correct pass"]])
    c = np.array(rep.class_confusion) if rep.class_confusion else np.zeros((1, 1), int)
    _heatmap(a2, c, rep.class_labels or ["-"], rep.class_labels or ["-"], "model box class", "reviewer box class",
             "Boxes: model vs reviewer")
    fig.tight_layout()
    return _to_rgb(fig)


def _heatmap(ax, m: np.ndarray, rows, cols, ylabel, xlabel, title, cell_names=None) -> None:
    ax.imshow(m, cmap="Blues", vmin=0, vmax=max(1, int(m.max())))
    ax.set_xticks(range(len(cols)), cols, fontsize=8, rotation=20 if len(cols) > 3 else 0)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    hi = max(1, int(m.max()))
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            text = str(int(m[i, j])) + (f"\n{cell_names[i][j]}" if cell_names else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if m[i, j] > hi / 2 else "black")
