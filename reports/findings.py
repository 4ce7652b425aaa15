"""The short list a report opens with: what the rows say, each figure with its configuration and interval.

Computed from the per-cell summary the report tables use (``reports.cell_summary.summarize_cells``):

- which framework is faster per mode, and by how much (Keras/PyTorch with its 95% bootstrap interval);
- what the paper's two-tower split gains over the single tower, per framework;
- the best fast path per framework, against the framework's own baseline (fp32, default formulation);
- the highest fraction of the device's ceiling (the best matmul rate on that machine) each framework reached;
- every failed cell, one line each.

Rows from different machines are never pooled: the list then says so first and gives each machine's
findings apart, labelled with its environment.
"""

from __future__ import annotations

import html
import math
from collections import Counter

import pandas as pd
from rich.console import Console
from rich.markup import escape

from benchmarks import frameworks
from benchmarks.cell import BASELINE_FAST_PATHS, math_mode_label
from benchmarks.measure.machine_load import BUSY_CORES
from reports.ceilings import device_ceiling, device_kind, per_device_gflops
from reports.cell_summary import config_label, fastest_cell, ratio_interval, summarize_cells, winner

SETUP = ["mode", "batch_size", "device_setup"]
INTERVAL_NOTE = (
    "ratios are of median images/s; [low–high] is the 95% percentile-bootstrap interval over per-step times; "
    "a side is called faster only when the interval excludes 1. Figures from different machines are never compared."
)
ERROR_CHARS = 140


def _name(framework: str) -> str:
    return frameworks.label(framework)


def _interval(low: float, high: float) -> str:
    return "[no interval]" if math.isnan(low) or math.isnan(high) else f"[{low:.2f}–{high:.2f}]"


def _where(cell: pd.Series) -> str:
    """'imagenet-split train b32 cpu': the cell's setup, for a finding's text."""
    return f"{cell['variant']} {cell['mode']} b{int(cell['batch_size'])} {cell['device_setup']}"


def _ok(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["images_per_s"].notna()] if not summary.empty else summary


def _pairs(summary: pd.DataFrame, column: str, first: str, second: str, keys: list[str]):
    """(key values, fastest cell of ``first``, fastest cell of ``second``) where both finished."""
    cells = _ok(summary)
    if cells.empty:
        return
    for values, group in cells[cells[column].isin([first, second])].groupby(keys, sort=False, dropna=False):
        a, b = fastest_cell(group[group[column] == first]), fastest_cell(group[group[column] == second])
        if a is not None and b is not None:
            yield dict(zip(keys, values, strict=True)), a, b


def framework_findings(summary: pd.DataFrame) -> list[str]:
    """Per mode: which of the compared pair (PyTorch, Keras) is faster in how many cells, and by how much."""
    first, second = frameworks.default_names()
    a_name, b_name = _name(first), _name(second)
    by_mode: dict[str, list[tuple[str, str]]] = {}
    for _, a_cell, b_cell in _pairs(summary, "framework", first, second, ["variant", *SETUP]):
        ratio, low, high = ratio_interval(a_cell, b_cell)
        verdict = winner(low, high, a_name, b_name)
        configs = f"{b_name} {config_label(b_cell)}, {a_name} {config_label(a_cell)}"
        if verdict == a_name:  # say the winner's factor: first/second, the interval inverted
            text = f"{a_name} {1 / ratio:.2f}x {b_name} {_interval(1 / high, 1 / low)}"
        elif verdict == b_name:
            text = f"{b_name} {ratio:.2f}x {a_name} {_interval(low, high)}"
        else:
            text = f"no clear winner, {b_name}/{a_name} {ratio:.2f} {_interval(low, high)}"
        where = f"{b_cell['variant']} b{int(b_cell['batch_size'])} {b_cell['device_setup']}"
        by_mode.setdefault(b_cell["mode"], []).append((verdict, f"{where}: {text} ({configs})"))
    lines = []
    for mode, cells in by_mode.items():
        counts = Counter(verdict for verdict, _ in cells)
        tally = f"{b_name} faster in {counts[b_name]}, {a_name} in {counts[a_name]} of {len(cells)} cells"
        lines.append(f"{mode}: {tally}; " + "; ".join(text for _, text in cells))
    return lines


def split_findings(summary: pd.DataFrame) -> list[str]:
    """Per framework: the split's images/s over the single tower's, same data set, mode, batch and devices."""
    paper = summary[summary["layout"].isin(["single", "split"])] if not summary.empty else summary
    by_framework: dict[str, list[str]] = {}
    for key, single, split in _pairs(paper, "layout", "single", "split", ["framework", "dataset", *SETUP]):
        ratio, low, high = ratio_interval(single, split)
        verdict = winner(low, high, "single", "split")
        gain = {"split": "faster", "single": "slower"}.get(verdict, "no clear difference")
        by_framework.setdefault(key["framework"], []).append(
            f"{key['dataset']} {key['mode']} b{int(key['batch_size'])} {key['device_setup']}: "
            f"{ratio:.2f}x {_interval(low, high)} {gain} ({config_label(split)} vs {config_label(single)})"
        )
    return [f"split vs single, {_name(fw)}: " + "; ".join(cells) for fw, cells in by_framework.items()]


def fast_path_findings(summary: pd.DataFrame) -> list[str]:
    """Per framework: the configuration that won most often against its baseline, and its largest gain."""
    cells = _ok(summary)
    if cells.empty:
        return []
    lines = []
    for framework, mine in cells.groupby("framework", sort=False):
        wins: Counter[str] = Counter()
        gains = []
        for _, group in mine.groupby(["variant", *SETUP], sort=False):
            configs = {config_label(cell) for _, cell in group.iterrows()}
            if len(configs) < 2:
                continue
            default_impl = frameworks.default_split_impl(framework, group["variant"].iloc[0])
            is_base = group["fast_path"].isin(BASELINE_FAST_PATHS) & (
                group["layout"].ne("split") | group["split_impl"].eq(default_impl)
            )
            base, best = fastest_cell(group[is_base]), fastest_cell(group)
            if base is None:
                continue
            wins[config_label(best)] += 1
            gains.append((ratio_interval(base, best), best))
        if not gains:
            continue
        top, count = wins.most_common(1)[0]
        (ratio, low, high), cell = max(gains, key=lambda gain: gain[0][0])
        lines.append(
            f"best fast path, {_name(framework)}: {top} fastest in {count} of {len(gains)} cells; largest gain "
            f"{ratio:.2f}x baseline {_interval(low, high)} ({config_label(cell)} on {_where(cell)})"
        )
    return lines


def ceiling_findings(summary: pd.DataFrame) -> list[str]:
    """Per framework: the highest fraction of the device's ceiling any of its cells reached, with its IQR."""
    cells = _ok(summary)
    if cells.empty or cells["ceiling_gflops"].isna().all():
        return []
    ceiling = device_ceiling(cells)
    fraction = per_device_gflops(cells) / ceiling
    cells = cells.assign(device_ceiling=ceiling, fraction=fraction, device_kind=device_kind(cells))
    lines = []
    for framework, mine in cells[cells["fraction"].notna()].groupby("framework", sort=False):
        cell = mine.loc[mine["fraction"].idxmax()]
        low = cell["fraction"] * cell["images_per_s_q25"] / cell["images_per_s"]
        high = cell["fraction"] * cell["images_per_s_q75"] / cell["images_per_s"]
        lines.append(
            f"{_name(framework)} reached at most {cell['fraction']:.1%} of the {cell['device_kind'].upper()} ceiling "
            f"(IQR {low:.1%}–{high:.1%}; ceiling {cell['device_ceiling']:,.0f} GFLOP/s "
            f"{math_mode_label(cell.get('math_mode') or cell['precision'])}, the best "
            f"matmul on this machine) with {config_label(cell)} on {_where(cell)}"
        )
    return lines


def failure_findings(rows: pd.DataFrame) -> list[str]:
    """One line per failed row: framework, cell, configuration, status and the error's first line."""
    if rows.empty:
        return []
    lines = []
    for _, row in rows[rows["status"] != "ok"].iterrows():
        error = str(row["error"]).strip().splitlines()[0] if isinstance(row["error"], str) and row["error"] else ""
        error = error if len(error) <= ERROR_CHARS else error[: ERROR_CHARS - 1] + "…"
        lines.append(
            f"failed: {_name(row['framework'])} {_where(row)} ({config_label(row)}): {row['status']}"
            + (f": {error}" if error else "")
        )
    return lines


def busy_machine_findings(frame: pd.DataFrame) -> list[str]:
    """A warning first when other work ran beside some cells: one other process made a cell 4x slower on two
    cores, and the figures of such cells (and every ratio built on them) say less than they seem to."""
    if "other_load_cores" not in frame:
        return []
    busy = frame[frame["other_load_cores"] > BUSY_CORES]
    if busy.empty:
        return []
    worst = busy["other_load_cores"].max()
    return [
        f"WARNING: the machine was busy during {len(busy)} of {len(frame)} cells (other processes and steal used up "
        f"to {worst:.2f} cores beside them, more than {BUSY_CORES:g}): their figures may be low and the ratios "
        "built on them unsound; rerun on a quiet machine (the rows' metrics.machine_load say which)."
    ]


def spread_findings(summary: pd.DataFrame) -> list[str]:
    """One line when the cells ran in one process each: their intervals see one process's steps only, and how far
    a rerun moves (5-15% between processes on a shared machine) was not measured."""
    if summary.empty or "repeats" not in summary:
        return []
    single = summary[(summary["repeats"] == 1) & summary["images_per_s"].notna()]
    if single.empty:
        return []
    return [
        f"spread unmeasured: {len(single)} of {len(summary)} cells ran in one process each, so their intervals see "
        "that process's steps only and a rerun may differ by more; run with --repeats 3 to measure it, or judge a "
        "change with bench.py ab (base and new side by side)."
    ]


def build_findings(frame: pd.DataFrame, summary: pd.DataFrame | None = None) -> list[str]:
    """The findings of a tidy results frame (``reports.load``), per machine when there are several."""
    if frame.empty:
        return ["No result rows."]
    summary = summarize_cells(frame) if summary is None else summary
    environments = list(dict.fromkeys(frame["environment"]))
    lines = []
    if len(environments) > 1:
        lines.append(
            f"Results from {len(environments)} machines ({', '.join(environments)}): findings are given per machine; "
            "figures from different machines are not pooled or compared."
        )
    for environment in environments:
        part = summary[summary["environment"] == environment] if not summary.empty else summary
        found = [
            *busy_machine_findings(frame[frame["environment"] == environment]),
            *framework_findings(part),
            *split_findings(part),
            *fast_path_findings(part),
            *ceiling_findings(part),
            *failure_findings(frame[frame["environment"] == environment]),
            *spread_findings(part),
        ]
        found = found or ["no throughput cell finished on this machine."]
        lines += [f"[{environment}] {line}" if len(environments) > 1 else line for line in found]
    return lines


def findings_markdown(findings: list[str]) -> str:
    """The findings as a Markdown section: a bullet list and how to read its intervals."""
    items = [f"- {line}" for line in findings]
    return "\n".join(["## Findings", "", *items, "", f"> {INTERVAL_NOTE}", ""])


def findings_html(findings: list[str]) -> str:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in findings)
    return f'<h2>Findings</h2>\n<ul class="findings">{items}</ul>\n<p class="note">{html.escape(INTERVAL_NOTE)}</p>'


def render_findings(findings: list[str], console: Console) -> None:
    """The findings in a terminal, after ``bench.py run``'s tables."""
    console.print("[bold]Findings[/]")
    for line in findings:
        console.print(f"  - {escape(line)}", highlight=False)
    console.print(f"  {escape(INTERVAL_NOTE)}", highlight=False, style="dim")
