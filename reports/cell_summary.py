"""The per-cell summary every table, finding and comparison starts from, and the ratios between cells.

Repeats of a cell are pooled: its per-step times (all repeats together) give the median images/s and
the interquartile range. Every summary keeps an ``environment`` column, so figures from different
machines are never compared with each other. Failed cells keep their status and have missing figures
(NaN), never zero.

Ratios (Keras/PyTorch, towers/grouped, ...) carry a 95% interval from a hierarchical percentile
bootstrap (``reports.statistics``): each side's processes (repeats) are resampled, then each chosen
process's steps (2,000 times, seed 0), and the ratio of the resampled medians of per-process
median throughputs gives the 2.5th and 97.5th percentiles; with one process per side it sees only
the steps' spread, and the tables' run-to-run spread note says so. Without per-step
samples (fewer than 2 on a side) the interval is the ratio of quartile throughputs instead
(q25/q75 to q75/q25), which is wider. A side is called faster only when the interval excludes 1.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from benchmarks.cell import BASELINE_FAST_PATHS
from reports.statistics import process_spread, ratio_replicates

THROUGHPUT_MODES = ("train", "infer")
CELL_KEYS = ["environment", "framework", "variant", "split_impl", "fast_path", "mode", "batch_size", "device_setup"]
# What a summary line keeps of its cell besides the keys (the same for every process of the cell).
CELL_FACTS = ("dataset", "layout", "devices", "parallel", "simulated", "gpus", "nodes", "precision", "math_mode")
BOOTSTRAP_RESAMPLES = 2000
# How every table heads the cell's key columns; declared once for the tables, compare and the failures list.
DISPLAY_NAMES = {"batch_size": "batch", "device_setup": "devices", "split_impl": "impl", "fast_path": "fast path"}


def spread_note(summary: pd.DataFrame) -> str:
    """The run-to-run spread these cells showed: SD of log per-process medians, or that it was not measured."""
    if summary.empty or "processes" not in summary:
        return "run-to-run spread: no per-step samples to measure it."
    spreads = [process_spread(p) for p in summary["processes"] if isinstance(p, list) and len(p) >= 2]
    if not spreads:
        return (
            "run-to-run spread: not measured (one process per cell); intervals see only the steps of one process, "
            "and a rerun may differ by more. Run with --repeats 3 or more."
        )
    return (
        f"run-to-run spread (SD of per-process medians, {len(spreads)} cells with 2+ processes): median "
        f"{np.median(spreads):.1%}, largest {max(spreads):.1%}."
    )


def throughput_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of throughput cells (train/infer), not accuracy runs."""
    if frame.empty or "mode" not in frame:
        return frame
    return frame[frame["mode"].isin(THROUGHPUT_MODES)]


def _status_text(statuses: pd.Series) -> str:
    failed = statuses[statuses != "ok"]
    if failed.empty:
        return "ok"
    kinds = ", ".join(dict.fromkeys(failed))
    if len(failed) == len(statuses):
        return kinds
    return f"ok ({len(failed)} of {len(statuses)} repeats {kinds})"


def _pooled(group: pd.DataFrame, batch: int) -> dict:
    """Median and quartile images/s of a cell, from its pooled per-step times when every repeat has them."""
    ok = group[group["status"] == "ok"]
    samples = [t for times in ok["step_times_s"] if isinstance(times, list) for t in times]
    have_all = len(ok) > 0 and all(isinstance(t, list) and t for t in ok["step_times_s"])
    if have_all and batch > 0:
        q25, median, q75 = np.percentile(samples, [25, 50, 75])
        return {"images_per_s": batch / median, "q25": batch / q75, "q75": batch / q25, "samples": samples}
    # Some repeats without samples: the median of the rows' own figures, and no samples to test with.
    return {
        "images_per_s": ok["images_per_s"].median(),
        "q25": ok["images_per_s_q25"].median(),
        "q75": ok["images_per_s_q75"].median(),
        "samples": [],
    }


def energy_per_image(ok: pd.DataFrame, batch: int) -> float:
    """Joules per image over the timed steps of a cell's successful repeats: their energy over their images.

    Each row's ``energy_j`` is NVML's counter over its timed steps, ``steps_timed`` x ``batch`` its images, so
    repeats weigh by the images they timed. A row without those (none but ``energy_per_image_j``) gives the
    median of that figure; NaN where no repeat measured energy (CPU cells, GPUs before Volta).
    """
    pooled = {"energy_j", "steps_timed"} <= set(ok.columns)
    have = ok[ok["energy_j"].notna() & (ok["steps_timed"] > 0)] if pooled else ok.iloc[0:0]
    if len(have) == len(ok) and not have.empty and batch > 0:
        return float(have["energy_j"].sum() / (have["steps_timed"].sum() * batch))
    return float(ok["energy_per_image_j"].median()) if "energy_per_image_j" in ok else math.nan


def summarize_cells(frame: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """One line per cell (repeats pooled): status, images/s median and quartiles, memory, FLOP/s, energy."""
    keys = keys or CELL_KEYS
    rows = throughput_rows(frame)
    if rows.empty:
        return pd.DataFrame()
    lines = []
    for values, group in rows.groupby(keys, sort=False, dropna=False):
        first = group.iloc[0]
        ok = group[group["status"] == "ok"]
        pooled = _pooled(group, int(first["batch_size"]))
        lines.append(
            {
                **dict(zip(keys, values, strict=True)),
                **{c: first[c] for c in CELL_FACTS if c in first},
                "repeats": len(group),
                "status": _status_text(group["status"]),
                "error": next((e for e in group["error"] if isinstance(e, str)), None),
                "images_per_s": pooled["images_per_s"],
                "images_per_s_q25": pooled["q25"],
                "images_per_s_q75": pooled["q75"],
                "iqr_images_per_s": pooled["q75"] - pooled["q25"],
                "samples": pooled["samples"],
                "processes": [list(t) for t in ok["step_times_s"] if isinstance(t, list) and t],
                "first_step_s": ok["first_step_s"].median(),
                "peak_rss_mib": ok["peak_rss_mib"].max(),
                "nvml_peak_mib": ok["nvml_peak_mib"].max(),
                "framework_peak_mib": ok["framework_peak_mib"].max(),
                "achieved_gflops": (ok["flops_per_image"].median() * pooled["images_per_s"]) / 1e9,
                "ceiling_gflops": ok["ceiling_gflops"].median(),
                "energy_per_image_j": energy_per_image(ok, int(first["batch_size"])),
            }
        )
    return pd.DataFrame(lines)


def ratio_interval(
    a: pd.Series, b: pd.Series, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """(ratio, low, high) of b's over a's median images/s; see the module docstring for the method."""
    ratio = b["images_per_s"] / a["images_per_s"]
    if math.isnan(ratio):
        return math.nan, math.nan, math.nan
    samples_a, samples_b = np.asarray(a["samples"], float), np.asarray(b["samples"], float)
    if len(samples_a) < 2 or len(samples_b) < 2:
        return ratio, b["images_per_s_q25"] / a["images_per_s_q75"], b["images_per_s_q75"] / a["images_per_s_q25"]
    processes_a = a.get("processes") or [list(samples_a)]
    processes_b = b.get("processes") or [list(samples_b)]
    ratios = ratio_replicates(processes_a, processes_b, a["batch_size"], b["batch_size"], seed)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return ratio, float(low), float(high)


def winner(low: float, high: float, name_a: str, name_b: str) -> str:
    """Who is faster, only when the interval excludes 1."""
    if math.isnan(low) or math.isnan(high):
        return "not comparable"
    if low > 1:
        return name_b
    if high < 1:
        return name_a
    return "no clear winner"


def config_label(cell: pd.Series) -> str:
    """The configuration behind a cell's figure: split formulation (split variants) and fast path.

    E.g. 'towers', 'grouped+compiled', 'channels_last' or 'fp32' (a single-tower baseline).
    """
    parts = [cell["split_impl"]] if cell.get("layout") == "split" else []
    parts += [cell["fast_path"]] if cell.get("fast_path", "fp32") not in BASELINE_FAST_PATHS or not parts else []
    return "+".join(parts)


def fastest_cell(group: pd.DataFrame) -> pd.Series | None:
    """The fastest successful cell of a group (e.g. the faster split formulation), else its first line."""
    if group.empty:
        return None
    ok = group[group["images_per_s"].notna()]
    return ok.loc[ok["images_per_s"].idxmax()] if not ok.empty else group.iloc[0]


def display_names(table: pd.DataFrame) -> pd.DataFrame:
    """Column names as the tables show them (batch, devices, impl, fast path)."""
    return table.rename(columns=DISPLAY_NAMES)
