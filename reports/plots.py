"""Plots as PNG bytes (matplotlib's Agg renderer, no display): throughput, batch size, memory, scaling.

Each function takes the pooled cell summary of one environment (``tables.summarize_cells``) and
returns PNG bytes, or None when the results hold no data for that plot; the report then says it
was skipped and why. Figures are built with ``matplotlib.figure.Figure``, never pyplot, so no
window or global state is involved.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass

# matplotlib logs its cache-folder trouble (an unwritable home folder) on import, several lines on stderr; it
# falls back to a temporary folder and the plots are unaffected, so the report keeps stderr for real problems.
logging.getLogger("matplotlib").addHandler(logging.NullHandler())

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from benchmarks import frameworks  # noqa: E402


@dataclass
class Plot:
    """One plot: its kind, file name, title, PNG (None when skipped) and why it was skipped."""

    kind: str
    name: str
    title: str
    png: bytes | None
    skipped_because: str = ""


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _fastest(cells: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group of ``keys``, the faster split formulation (the tables name which); a failed cell stays."""
    ordered = cells.sort_values("images_per_s", ascending=False, na_position="last", kind="stable")
    return ordered.drop_duplicates(keys)


def _panels(figure: Figure, count: int) -> list:
    return [figure.add_subplot(count, 1, index) for index in range(1, count + 1)]


def throughput_bars(summary: pd.DataFrame) -> bytes | None:
    """images/s per variant and framework, one panel per mode and device setup; error bars span the IQR.

    A failed cell is a red label with its status where its bar would be, never a bar of height zero.
    """
    if summary.empty or summary["images_per_s"].isna().all():
        return None
    cells = _fastest(summary, ["framework", "variant", "mode", "batch_size", "device_setup"])
    panels = cells[["mode", "device_setup"]].drop_duplicates().sort_values(["mode", "device_setup"])
    widest = cells.groupby(["mode", "device_setup"])[["variant", "batch_size"]].value_counts().groupby(level=[0, 1])
    figure = Figure(figsize=(max(6.0, 1.3 * widest.size().max() + 1.5), 3.4 * len(panels)))
    for axes, (mode, setup) in zip(_panels(figure, len(panels)), panels.itertuples(index=False), strict=True):
        part = cells[(cells["mode"] == mode) & (cells["device_setup"] == setup)]
        configs = part[["variant", "batch_size"]].drop_duplicates().sort_values(["variant", "batch_size"])
        _bars_per_framework(axes, configs, part, ["variant", "batch_size"], "images_per_s", "status", _iqr_errors)
        labels = [f"{variant}\nbs={batch}" for variant, batch in configs.itertuples(index=False)]
        axes.set_xticks(np.arange(len(configs)), labels, fontsize=8)
        axes.set_ylabel("images/s")
        axes.set_title(f"{mode}, {setup}: median images/s, error bars = IQR", fontsize=10)
        axes.legend(fontsize=8)
    return _png(figure)


def _iqr_errors(rows: pd.DataFrame, heights: np.ndarray) -> np.ndarray:
    """Error bars from the median down to the first quartile and up to the third."""
    return np.vstack([heights - rows["images_per_s_q25"], rows["images_per_s_q75"] - heights])


def _bars_per_framework(
    axes,
    configs: pd.DataFrame,
    part: pd.DataFrame,
    on: list[str],
    value: str,
    missing: str,
    errors: Callable[[pd.DataFrame, np.ndarray], np.ndarray] | None = None,
    **style: object,
) -> None:
    """One bar per configuration and framework, side by side; a missing figure is a red label, never a zero bar."""
    names = sorted(part["framework"].unique())
    width = 0.8 / len(names)
    for offset, framework in enumerate(names):
        rows = configs.merge(part[part["framework"] == framework], on=on, how="left")
        heights = rows[value].to_numpy(float)
        positions = np.arange(len(configs)) + (offset - (len(names) - 1) / 2) * width
        drawn = np.isfinite(heights)
        extra = {"yerr": errors(rows, heights)[:, drawn], "capsize": 3} if errors else {}
        label, colour = frameworks.label(framework), frameworks.colour(framework)
        axes.bar(positions[drawn], heights[drawn], width, label=label, color=colour, **extra, **style)
        for position, text in zip(positions[~drawn], rows[missing].fillna("missing")[~drawn], strict=True):
            axes.text(position, 0, f" {text}", rotation=90, ha="center", va="bottom", fontsize=8, color="#b00")


def _lines_by_batch(summary: pd.DataFrame, value: str, ylabel: str, title: str) -> bytes | None:
    """``value`` against batch size, one line per framework/variant/devices; None without 2 batch sizes."""
    if summary.empty or value not in summary:
        return None
    keys = ["framework", "variant", "device_setup", "mode"]
    cells = _fastest(summary, [*keys, "batch_size"])
    cells = cells[cells[value].notna()]
    if cells.empty or cells.groupby(keys)["batch_size"].nunique().max() < 2:
        return None
    modes = sorted(cells["mode"].unique())
    figure = Figure(figsize=(10, 3.4 * len(modes)))
    for axes, mode in zip(_panels(figure, len(modes)), modes, strict=True):
        for (framework, variant, setup), line in cells[cells["mode"] == mode].groupby(keys[:3]):
            line = line.sort_values("batch_size")
            axes.plot(
                line["batch_size"],
                line[value],
                marker=frameworks.marker(framework),
                linestyle="-" if "split" in variant else "--",
                label=f"{frameworks.label(framework)} {variant} ({setup})",
            )
        axes.set_xscale("log", base=2)
        batches = sorted(cells["batch_size"].unique())
        axes.set_xticks(batches, [str(b) for b in batches])
        axes.minorticks_off()
        axes.set_xlabel("batch size")
        axes.set_ylabel(ylabel)
        axes.set_title(f"{mode}: {title}", fontsize=10)
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(figure)


def throughput_vs_batch(summary: pd.DataFrame) -> bytes | None:
    return _lines_by_batch(summary, "images_per_s", "images/s (median)", "throughput vs batch size")


def memory_vs_batch(summary: pd.DataFrame) -> bytes | None:
    """NVML device peak where there is one (GPU), else the worker's peak RSS (CPU)."""
    if not summary.empty and summary["nvml_peak_mib"].notna().any():
        return _lines_by_batch(summary, "nvml_peak_mib", "device memory peak, MiB (NVML)", "GPU memory vs batch size")
    return _lines_by_batch(summary, "peak_rss_mib", "peak RSS, MiB", "worker memory vs batch size")


def scaling_plot(scaling: pd.DataFrame) -> bytes | None:
    """Speedup over one device per cell, one panel per device setup, the ideal (N) as a dashed line.

    Simulated devices are hatched and their panel says they make no scaling claim.
    """
    if scaling.empty or scaling["speedup"].isna().all():
        return None
    rows = scaling[scaling["img/s (N)"].notna()]  # a cell without a speedup (no baseline) is labelled below
    setups = sorted(rows["devices"].unique())
    widest = rows[["devices", "variant", "mode", "batch"]].drop_duplicates().groupby("devices").size().max()
    figure = Figure(figsize=(min(18.0, max(6.0, 1.2 * widest + 1.5)), 3.4 * len(setups)))
    for axes, setup in zip(_panels(figure, len(setups)), setups, strict=True):
        part = rows[rows["devices"] == setup]
        configs = part[["variant", "mode", "batch"]].drop_duplicates().sort_values(["variant", "mode", "batch"])
        simulated = "simulated" in str(setup)
        _bars_per_framework(
            axes, configs, part, ["variant", "mode", "batch"], "speedup", "note", hatch="//" if simulated else None
        )
        devices = int(str(setup).split()[0])
        axes.axhline(devices, color="grey", linestyle="--", linewidth=0.8, label=f"ideal ({devices}x)")
        axes.axhline(1, color="black", linewidth=0.6)
        labels = [f"{variant}\n{mode} bs={batch}" for variant, mode, batch in configs.itertuples(index=False)]
        axes.set_xticks(np.arange(len(configs)), labels, fontsize=7)
        axes.set_ylabel("speedup over 1 device")
        claim = " (simulated on one CPU: no scaling claim)" if simulated else ""
        axes.set_title(f"{setup}{claim}", fontsize=10)
        axes.legend(fontsize=8)
    return _png(figure)


def accuracy_plot(curves: pd.DataFrame) -> bytes | None:
    """Test top-1 per epoch, one line per accuracy run."""
    if curves.empty or "top1" not in curves or curves["top1"].isna().all():
        return None
    figure = Figure(figsize=(7, 4))
    axes = figure.add_subplot(1, 1, 1)
    for run, line in curves.groupby("run", sort=False):
        axes.plot(line["epoch"], line["top1"], marker="o", label=run)
    axes.set_xlabel("epoch")
    axes.set_ylabel("test top-1")
    axes.legend(fontsize=7)
    return _png(figure)


def make_plots(summary: pd.DataFrame, scaling: pd.DataFrame, curves: pd.DataFrame, suffix: str = "") -> list[Plot]:
    """Every plot for one environment; those without data come back with png None and the reason."""
    specs = [
        (
            "throughput",
            "Throughput per variant and framework",
            lambda: throughput_bars(summary),
            "no successful throughput cell",
        ),
        (
            "throughput_vs_batch",
            "Throughput vs batch size",
            lambda: throughput_vs_batch(summary),
            "no cell was measured at two or more batch sizes",
        ),
        (
            "memory_vs_batch",
            "Memory vs batch size",
            lambda: memory_vs_batch(summary),
            "no memory figures at two or more batch sizes",
        ),
        ("scaling", "Scaling", lambda: scaling_plot(scaling), "no multi-device cell with a one-device baseline"),
        ("accuracy", "Accuracy per epoch", lambda: accuracy_plot(curves), "no accuracy run with a per-epoch curve"),
    ]
    plots = []
    for name, title, draw, reason in specs:
        png = draw()
        plots.append(Plot(name, f"{name}{suffix}.png", title, png, "" if png else reason))
    return plots
