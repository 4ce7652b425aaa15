"""Results rows as a tidy pandas table, and the throughput summary ``bench.py run`` prints."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table


def rows_to_frame(rows: list[dict]) -> pd.DataFrame:
    """One line per cell: its configuration, status and headline figures (missing stays missing)."""
    records = []
    for row in rows:
        cell, metrics = row["cell"], row.get("metrics") or {}
        memory = metrics.get("memory") or {}
        records.append(
            {
                "framework": cell["framework"],
                "variant": cell["variant"],
                "split_impl": cell["split_impl"],
                "mode": cell["mode"],
                "batch_size": cell["batch_size"],
                "device_setup": row["device_setup"],
                "parallel": row["parallel"],
                "repeat": cell["repeat"],
                "status": row["status"],
                "images_per_s": metrics.get("images_per_s"),
                "images_per_s_q25": metrics.get("images_per_s_q25"),
                "images_per_s_q75": metrics.get("images_per_s_q75"),
                "median_step_s": metrics.get("median_step_s"),
                "iqr_step_s": metrics.get("iqr_step_s"),
                "first_step_s": metrics.get("first_step_s"),
                "peak_rss_bytes": memory.get("peak_rss_bytes"),
                "achieved_gflops": (metrics["achieved_flops_per_s"] / 1e9) if metrics else None,
                "error": row.get("error"),
            }
        )
    return pd.DataFrame.from_records(records)


def _cell_text(group: pd.DataFrame) -> str:
    ok = group[group["status"] == "ok"]
    if ok.empty:
        return f"[red]{group['status'].iloc[0]}[/]"
    median = ok["images_per_s"].median()
    spread = (ok["images_per_s_q75"] - ok["images_per_s_q25"]).median() / 2
    return f"{median:,.1f} ± {spread:,.1f}"


def render_throughput(frame: pd.DataFrame, console: Console) -> None:
    """images/s (median ± half the IQR) per cell, Keras and PyTorch side by side.

    Split variants name the formulation each framework ran (grouped or towers).
    """
    keys = ["variant", "mode", "batch_size", "device_setup"]
    frameworks = sorted(frame["framework"].unique())
    table = Table(title="Throughput, images/s (median ± half IQR of per-step rates)", title_justify="left")
    for header in ["variant", "mode", "batch", "devices", *frameworks]:
        table.add_column(header, justify="right" if header in ("batch", *frameworks) else "left")
    for (variant, mode, batch, setup), group in frame.groupby(keys, sort=False):
        cells = []
        for framework in frameworks:
            parts = []
            for impl, part in group[group["framework"] == framework].groupby("split_impl", sort=False):
                label = f" ({impl})" if "split" in variant else ""
                parts.append(_cell_text(part) + label)
            cells.append("\n".join(parts))
        table.add_row(variant, mode, str(batch), setup, *cells)
    console.print(table)
