"""``bench.py run --best``: per framework and variant, the fastest configuration and what each fast path did."""

from __future__ import annotations

import pandas as pd
from rich.console import Console

from benchmarks import frameworks
from benchmarks.cell import BASELINE_FAST_PATHS
from reports.ceilings import device_ceiling, per_device_gflops
from reports.cell_summary import display_names, throughput_rows
from reports.render import ReportTable, terminal_table

GROUP = ["environment", "framework", "variant", "mode", "batch_size", "device_setup"]
BEST_NOTE = (
    "baseline: fp32, no compilation, the framework's default split formulation; the ceiling is the device's: "
    "the best large-matmul rate either framework measured on it in the winner's precision, per device."
)


def _config(row: pd.Series) -> str:
    impl = row["split_impl"] if "split" in row["variant"] else ""
    return "+".join(filter(None, [impl, row["fast_path"]]))


def best_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per group: the winner, its ratio to the baseline, its share of the ceiling, the rest."""
    lines = []
    frame = throughput_rows(frame)
    if frame.empty:
        return pd.DataFrame()
    ceiling = device_ceiling(frame)
    frame = frame.assign(device_ceiling_gflops=ceiling, of_device=per_device_gflops(frame) / ceiling)
    for key, group in frame.groupby(GROUP, sort=False):
        ok = group[group["status"] == "ok"]
        where = dict(zip(GROUP, key, strict=True))
        framework, variant = where["framework"], where["variant"]
        default_impl = frameworks.default_split_impl(framework, variant)
        base = ok[(ok["fast_path"].isin(BASELINE_FAST_PATHS)) & (ok["split_impl"] == default_impl)]
        base_rate = float(base["images_per_s"].median()) if not base.empty else float("nan")
        configs = pd.Series([_config(row) for _, row in ok.iterrows()], index=ok.index, dtype=object)
        rates = ok["images_per_s"].groupby(configs).median().sort_values(ascending=False)
        winner = ok[configs == rates.index[0]].iloc[0] if not rates.empty else None
        failed = group[group["status"] != "ok"]
        others = [f"{config} {rate / base_rate:.2f}x" for config, rate in rates.iloc[1:].items()]
        others += [f"{_config(row)} {row['status']}" for _, row in failed.iterrows()]
        fraction = winner["of_device"] if winner is not None else None
        lines.append(
            {
                **where,
                "configurations": len({_config(row) for _, row in group.iterrows()}),
                "winner": _config(winner) if winner is not None else "none finished",
                "images_per_s": rates.iloc[0] if not rates.empty else None,
                "vs_baseline": rates.iloc[0] / base_rate if not rates.empty else None,
                "baseline_images_per_s": base_rate,
                "fraction_of_ceiling": fraction,
                "device_ceiling_gflops": winner["device_ceiling_gflops"] if winner is not None else None,
                "others": ", ".join(others),
            }
        )
    return pd.DataFrame(lines)


def render_best(frame: pd.DataFrame, console: Console) -> None:
    """The --best table in the terminal, as the report shows it."""
    console.print(
        terminal_table(_table(best_frame(frame)), title="Fastest configuration per framework and variant (--best)")
    )
    console.print(BEST_NOTE, highlight=False)


def best_table(frame: pd.DataFrame) -> ReportTable | None:
    """The --best table for reports; None when no cell was measured in more than one configuration."""
    best = best_frame(frame)
    if best.empty or best["configurations"].max() < 2:
        return None
    return _table(best)


def _table(best: pd.DataFrame) -> ReportTable:
    columns = {
        "images_per_s": "img/s",
        "vs_baseline": "x baseline",
        "fraction_of_ceiling": "of ceiling",
        "device_ceiling_gflops": "ceiling GFLOP/s",
        "others": "others (x baseline)",
    }
    table = display_names(best.drop(columns=["baseline_images_per_s", "configurations"], errors="ignore"))
    return ReportTable(
        "Fastest configuration per framework and variant",
        table.rename(columns=columns),
        [BEST_NOTE, "each other configuration changes one thing from the baseline; its ratio is to the baseline."],
        {"x baseline": ".2f", "of ceiling": ".0%"},
    )
