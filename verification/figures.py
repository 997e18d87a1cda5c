"""Figures for evidence packages (PNG bytes): agreement histogram, overview map of results, progress over time."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from verification.packages import label_colour


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": "corroborate"})
    plt.close(fig)
    return buffer.getvalue()


def agreement_histogram(agreements: np.ndarray | Sequence[float], *, title: str) -> bytes:
    values = np.asarray(agreements, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(values, bins=[i / 20 for i in range(21)], color="#1f77b4", edgecolor="white")
    ax.set_xlabel("agreement (share of volunteers giving the consensus label)")
    ax.set_ylabel("tasks")
    mean = f", mean {values.mean():.2f}" if len(values) else ""
    ax.set_title(f"{title}: {len(values)} tasks{mean}")
    ax.set_xlim(0, 1)
    return _png(fig)


def overview_map(
    polygons: Sequence[Sequence[tuple[float, float]]], labels: Sequence[str], *, title: str
) -> bytes:
    """Task footprints (lon/lat rings) filled by consensus label."""
    fig, ax = plt.subplots(figsize=(7, 7))
    order: list[str] = []
    colours = [label_colour(label, order) for label in labels]
    if polygons:
        ax.add_collection(
            PolyCollection(
                [np.asarray(p) for p in polygons],
                facecolors=colours,
                edgecolors="#333333",
                linewidths=0.2,
                alpha=0.75,
            )
        )
        ax.autoscale_view()
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(
            handles=[
                Patch(color=label_colour(lab, order), label=lab or "no consensus")
                for lab in dict.fromkeys(labels)
            ],
            # Outside the axes: "best" placement tests every polygon and takes seconds on 50,000 tasks.
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize="small",
        )
    else:
        ax.text(0.5, 0.5, "no georeferenced tasks", ha="center", va="center", transform=ax.transAxes)
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_xlabel("longitude (EPSG:4326)")
    ax.set_ylabel("latitude (EPSG:4326)")
    ax.set_title(title)
    return _png(fig)


def progress_over_time(answer_times: np.ndarray, *, title: str) -> bytes:
    """Cumulative answers over time; ``answer_times`` are POSIX seconds."""
    fig, ax = plt.subplots(figsize=(7, 4))
    times = np.sort(np.asarray(answer_times, dtype=float))
    if len(times):
        dates = times.astype("datetime64[s]")
        ax.step(dates, np.arange(1, len(times) + 1), where="post", color="#2ca02c")
        fig.autofmt_xdate()
    else:
        ax.text(0.5, 0.5, "no answers", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("answers (cumulative)")
    ax.set_title(title)
    return _png(fig)
