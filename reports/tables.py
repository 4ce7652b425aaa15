"""The report's tables, each built from the per-cell summary (``reports.cell_summary``) or the tidy frame of
``reports.load``: frameworks side by side, Keras backends, memory, formulations and data sets, scaling, achieved
FLOP/s, accuracy, the variants and their layers. Each is a ``ReportTable`` that ``reports.render`` writes as
Markdown, HTML or a terminal table. Every table keeps an ``environment`` column (shown when there are several), so
figures from different machines are never compared; failed cells keep their status and have missing figures.
"""

from __future__ import annotations

import math

import pandas as pd

from benchmarks import frameworks
from benchmarks.cell import BASELINE_FAST_PATHS
from implementations.spec import infer
from implementations.variants import PAPER_NEURONS, every_variant, get_variant
from reports.ceilings import device_ceiling, per_device_gflops
from reports.cell_summary import (
    BOOTSTRAP_RESAMPLES,
    CELL_KEYS,
    config_label,
    display_names,
    fastest_cell,
    ratio_interval,
    spread_note,
    winner,
)
from reports.parity_table import variants_frame
from reports.render import ReportTable

RATIO_NOTE = (
    "ratio: median images/s of the second over the first; 95% interval by hierarchical bootstrap (processes, "
    f"then their steps; {BOOTSTRAP_RESAMPLES:,} resamples); where a side has fewer than 2 samples, the ratio of "
    "quartile throughputs. 'no clear winner' when the interval contains 1."
)


MEMORY_COLUMNS = {
    "peak_rss_mib": "peak RSS MiB",
    "nvml_peak_mib": "NVML peak MiB",
    "framework_peak_mib": "alloc peak MiB",
}
# Energy per image over the timed steps (NVML, GPU cells); the column is left out where no cell measured it.
ENERGY = "energy J/img"
ENERGY_NOTE = (
    "energy J/img: joules per image over the timed steps, from NVML's energy counter of the cell's GPUs (the whole "
    "device, idle draw included), pooled over repeats as their energy over their images; shown only when measured."
)


def contrast(
    summary: pd.DataFrame,
    column: str,
    first: str,
    second: str,
    keys: list[str],
    names: tuple[str, str],
    show_impl: bool = False,
    memory: bool = False,
    both_measured: bool = False,
) -> pd.DataFrame:
    """``second`` against ``first`` of ``column`` for each group of ``keys``: images/s, IQR, ratio, winner.

    Where a side has several cells in a group (both split formulations), its fastest is used and named.
    With ``both_measured``, groups where one side was never run are left out (a failed run stays in).
    """
    if summary.empty:
        return pd.DataFrame()
    lines = []
    for values, group in summary[summary[column].isin([first, second])].groupby(keys, sort=False, dropna=False):
        a, b = fastest_cell(group[group[column] == first]), fastest_cell(group[group[column] == second])
        if both_measured and (a is None or b is None):
            continue
        line = dict(zip(keys, values, strict=True))
        for name, side in zip(names, (a, b), strict=True):
            if show_impl:
                line[f"{name} config"] = "—" if side is None else config_label(side)
            line[f"{name} img/s"] = math.nan if side is None else side["images_per_s"]
            line[f"{name} IQR"] = math.nan if side is None else side["iqr_images_per_s"]
        ratio, low, high = ratio_interval(a, b) if a is not None and b is not None else (math.nan,) * 3
        line[f"{names[1]}/{names[0]}"] = ratio
        line["95% interval"] = "—" if math.isnan(low) else f"{low:.2f}–{high:.2f}"
        line["faster"] = winner(low, high, *names)
        if memory:
            for source, label in {**MEMORY_COLUMNS, "energy_per_image_j": ENERGY}.items():
                for name, side in zip(names, (a, b), strict=True):
                    line[f"{name} {label}"] = math.nan if side is None else side.get(source, math.nan)
        for name, side in zip(names, (a, b), strict=True):
            line[f"{name} status"] = "missing" if side is None else side["status"]
        lines.append(line)
    return _drop_empty(_drop_empty(pd.DataFrame(lines), like=" MiB"), like=ENERGY)


def _drop_empty(table: pd.DataFrame, like: str) -> pd.DataFrame:
    """Drop columns (named with ``like``) that are missing everywhere, e.g. GPU memory on a CPU run."""
    if table.empty:
        return table
    empty = [c for c in table.columns if like in c and table[c].isna().all()]
    return table.drop(columns=empty)


def _impl_where_split(table: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """'—' as the formulation of single-tower cells: they have no towered layer, so it means nothing."""
    if "split_impl" in table:
        table = table.copy()
        table.loc[summary.loc[table.index, "layout"] != "split", "split_impl"] = "—"
    return table


def cells_table(summary: pd.DataFrame) -> ReportTable:
    """Every throughput cell: status, images/s, IQR, first step, memory, FLOP/s."""
    if summary.empty:
        return ReportTable("All cells", pd.DataFrame(), empty_text="No throughput cells in these results.")
    columns = [
        *CELL_KEYS,
        "parallel",
        "repeats",
        "status",
        "images_per_s",
        "iqr_images_per_s",
        "first_step_s",
        "peak_rss_mib",
        "nvml_peak_mib",
        "framework_peak_mib",
        "achieved_gflops",
        "energy_per_image_j",
    ]
    table = _impl_where_split(summary.reindex(columns=columns), summary).rename(
        columns={
            "images_per_s": "img/s",
            "iqr_images_per_s": "IQR",
            "first_step_s": "first step s",
            "achieved_gflops": "GFLOP/s",
            "energy_per_image_j": ENERGY,
            **MEMORY_COLUMNS,
        }
    )
    table = _drop_empty(_drop_empty(display_names(table), like=" MiB"), like=ENERGY)
    notes = [
        "img/s: batch / median step time, per-step times pooled over repeats; IQR: the interquartile range of "
        "per-step images/s. A failed cell shows its status and no figures.",
        spread_note(summary),
        "memory: peak RSS is the worker process on CPU (framework runtime included); on GPU, NVML's device peak "
        "during the timed steps and the framework allocator's peak, summed over devices.",
        *([ENERGY_NOTE] if ENERGY in table else []),
    ]
    return ReportTable("All cells", table, notes, {ENERGY: ".3g"})


FRAMEWORK_KEYS = ["environment", "variant", "mode", "batch_size", "device_setup"]
_PAIR = frameworks.default_names()  # the pair every table compares: native PyTorch, Keras on TensorFlow


def _pair_labels() -> tuple[str, str]:
    first, second = _PAIR
    return frameworks.label(first), frameworks.label(second)


def framework_table(summary: pd.DataFrame) -> ReportTable:
    """Keras against PyTorch per variant, mode, batch size and device setup: images/s and the ratio."""
    table = contrast(summary, "framework", *_PAIR, FRAMEWORK_KEYS, _pair_labels(), show_impl=True)
    notes = [
        RATIO_NOTE,
        spread_note(summary),
        "each framework's fastest measured configuration, named under config: the split formulation (split "
        "variants) and the fast path (fp32 is the plain model; see the formulation and fast-path tables).",
    ]
    return ReportTable("Keras vs PyTorch", display_names(table), notes)


def backends_table(summary: pd.DataFrame) -> ReportTable | None:
    """Native PyTorch and the one Keras model on each backend side by side; None without a Keras-on-JAX/torch cell."""
    if summary.empty or summary["framework"].isin(_PAIR).all():
        return None
    ok = summary[(summary["status"] == "ok") & (summary["fast_path"].isin(BASELINE_FAST_PATHS))]
    present = list(dict.fromkeys(ok["framework"]))
    order = [f for f in frameworks.names() if f in present] + [f for f in present if f not in frameworks.names()]
    lines = []
    for key, group in ok.groupby(FRAMEWORK_KEYS, sort=False):
        line = dict(zip(FRAMEWORK_KEYS, key, strict=True))
        for framework in order:
            cells = group[group["framework"] == framework]
            fastest = cells.loc[cells["images_per_s"].idxmax()] if not cells.empty else None
            impl = f" ({fastest['split_impl']})" if fastest is not None and fastest["layout"] == "split" else ""
            line[f"{frameworks.label(framework)} img/s"] = (
                f"{fastest['images_per_s']:,.1f}{impl}" if fastest is not None else None
            )
        rates = group.groupby("framework")["images_per_s"].max()
        line["fastest"] = frameworks.label(rates.idxmax())
        lines.append(line)
    notes = [
        "the same Keras model on each Keras 3 backend (TensorFlow, JAX jit-compiled, torch eager) and the native "
        "PyTorch model; fp32 cells, each framework's faster split formulation in brackets.",
    ]
    return ReportTable("Keras backends and PyTorch", display_names(pd.DataFrame(lines)), notes)


def memory_table(summary: pd.DataFrame) -> ReportTable:
    """Keras against PyTorch memory: peak RSS (CPU); NVML device peak and allocator peak (GPU) where measured."""
    table = contrast(summary, "framework", *_PAIR, FRAMEWORK_KEYS, _pair_labels(), show_impl=True, memory=True)
    if not table.empty:
        kept = (" config", " MiB", f" {ENERGY}", " status")
        table = table[[*FRAMEWORK_KEYS, *[c for c in table.columns if c.endswith(kept)]]]
    notes = [
        "peak RSS: the worker process on CPU, framework runtime included. NVML peak: device memory in use during "
        "the timed steps (whole device), alloc peak: the framework allocator's own peak; both summed over devices "
        "and shown only when measured.",
        "the cell of each framework's fastest configuration, named under config.",
        *([ENERGY_NOTE] if any(c.endswith(ENERGY) for c in table.columns) else []),
    ]
    formats = {c: ".3g" for c in table.columns if c.endswith(ENERGY)}
    return ReportTable("Memory: Keras vs PyTorch", display_names(table), notes, formats)


def formulation_tables(summary: pd.DataFrame) -> list[ReportTable]:
    """Grouped vs towers, single vs split, ImageNet vs CIFAR-100, per framework; only where both were run."""
    if summary.empty:
        return []
    setup = ["mode", "batch_size", "device_setup"]
    split = summary[summary["layout"] == "split"]
    paper = summary[summary["dataset"] != "other"]
    specs = [
        (
            split,
            "split_impl",
            ("grouped", "towers"),
            "variant",
            ("grouped", "towers"),
            "Split formulation: grouped vs towers",
            "identical parameters and outputs; only the kernels differ.",
        ),
        (
            paper,
            "layout",
            ("single", "split"),
            "dataset",
            ("single", "split"),
            "Single vs split tower layout",
            "different networks: the split has fewer weights and FLOPs (see the variants table); split uses its "
            "faster formulation.",
        ),
        (
            paper,
            "dataset",
            ("imagenet", "cifar100"),
            "layout",
            ("ImageNet", "CIFAR-100"),
            "ImageNet (227x227) vs CIFAR-100 (32x32)",
            "different inputs and FLOPs per image (see the variants table).",
        ),
    ]
    tables = []
    for cells, column, (first, second), other, names, title, note in specs:
        keys = ["environment", "framework", other, *setup]
        table = contrast(cells, column, first, second, keys, names, show_impl=True, both_measured=True)
        empty = f"No cell was measured as both {names[0]} and {names[1]} with the same settings."
        tables.append(
            ReportTable(title, display_names(table), [RATIO_NOTE, spread_note(cells), note], empty_text=empty)
        )
    return tables


def _same_work(summary: pd.DataFrame, line: pd.Series) -> pd.DataFrame:
    """Cells of the same machine, framework, variant, mode and batch as ``line``."""
    return summary[
        (summary["environment"] == line["environment"])
        & (summary["framework"] == line["framework"])
        & (summary["variant"] == line["variant"])
        & (summary["mode"] == line["mode"])
        & (summary["batch_size"] == line["batch_size"])
    ]


def _baseline(summary: pd.DataFrame, line: pd.Series) -> pd.Series | None:
    """The one-device cell a multi-device cell is measured against: 1 GPU for GPUs, the CPU for simulated."""
    same = _same_work(summary, line)
    same = same[same["devices"] == 1]
    same = same[same["gpus"] == 1] if line["gpus"] > 0 else same[same["device_setup"] == "cpu"]
    return fastest_cell(same)


def _nodes(line: pd.Series) -> int:
    nodes = line.get("nodes", 1)
    return 1 if pd.isna(nodes) else int(nodes)


def _one_node_baseline(summary: pd.DataFrame, line: pd.Series) -> pd.Series | None:
    """For a multi-node cell, the same cell on one of its nodes: the same devices per node, one machine."""
    if _nodes(line) < 2:
        return None
    same = _same_work(summary, line)
    nodes = same["nodes"].fillna(1) if "nodes" in same else pd.Series(1, index=same.index)
    same = same[(nodes == 1) & (same["devices"] == line["devices"] // _nodes(line)) & ~same["simulated"].astype(bool)]
    return fastest_cell(same[same["gpus"] == line["gpus"]])


def _scaling_note(line: pd.Series, base: pd.Series | None) -> str:
    if line["simulated"]:
        return "simulated: no scaling claim"
    if base is None:
        return "no one-device baseline"
    if math.isnan(base["images_per_s"]):
        return f"one-device cell {base['status']}"
    return ""


def scaling_table(summary: pd.DataFrame) -> ReportTable:
    """1 vs N devices: speedup and efficiency = img/s(N) / (N x img/s(1)); simulated devices make no claim."""
    lines = []
    multi = summary[summary["devices"] > 1] if not summary.empty else summary
    for _, line in multi.iterrows():
        base = _baseline(summary, line)
        one = math.nan if base is None else base["images_per_s"]
        speedup = line["images_per_s"] / one
        node_base = _one_node_baseline(summary, line)
        one_node = math.nan if node_base is None else node_base["images_per_s"]
        lines.append(
            {
                "environment": line["environment"],
                "framework": line["framework"],
                "variant": line["variant"],
                "mode": line["mode"],
                "batch": line["batch_size"],
                "devices": line["device_setup"],
                "parallel": line["parallel"],
                "img/s (1)": one,
                "img/s (N)": line["images_per_s"],
                "speedup": speedup,
                "efficiency": math.nan if line["simulated"] else speedup / line["devices"],
                "img/s (1 node)": one_node,
                "efficiency vs 1 node": line["images_per_s"] / (_nodes(line) * one_node),
                "note": _scaling_note(line, base),
                "status (N)": line["status"],
            }
        )
    notes = [
        "efficiency = img/s(N) / (N x img/s(1)), the same global batch on 1 and N devices; data-parallel cells "
        "give each device batch/N.",
        "simulated devices share the same CPU cores: their rows exercise the code path and say nothing about scaling.",
    ]
    table = pd.DataFrame(lines)
    if not table.empty and table["img/s (1 node)"].notna().any():
        notes.append(
            "efficiency vs 1 node = img/s(nodes) / (nodes x img/s on one node with the same devices per node): what "
            "going beyond one machine costs. Multi-node rows are filed under the first node's machine."
        )
    elif not table.empty:
        table = table.drop(columns=["img/s (1 node)", "efficiency vs 1 node"])
    return ReportTable("Scaling: 1 vs N devices", table, notes, {"efficiency": ".0%", "efficiency vs 1 node": ".0%"})


def flops_table(summary: pd.DataFrame) -> ReportTable:
    """Achieved GFLOP/s per cell, and its fraction of a measured ceiling where the row has one."""
    if summary.empty:
        return ReportTable("Achieved FLOP/s", pd.DataFrame())
    table = summary[[*CELL_KEYS, "status", "images_per_s", "achieved_gflops", "ceiling_gflops"]].copy()
    table["device ceiling"] = device_ceiling(summary)
    table["of device ceiling"] = per_device_gflops(summary) / table["device ceiling"]
    table["of own ceiling"] = per_device_gflops(summary) / table["ceiling_gflops"]
    notes = ["FLOPs: forward convolutions and dense layers from the spec; training counted as 3x forward."]
    if table["ceiling_gflops"].isna().all():
        table = table.drop(columns=["ceiling_gflops", "device ceiling", "of device ceiling", "of own ceiling"])
        notes.append("no ceiling (a large matmul on the same device) in these results: achieved GFLOP/s only.")
    else:
        notes.append(
            "own ceiling: a large matmul in the cell's framework and precision on one of its devices; device "
            "ceiling: the best such rate any framework reached on that machine and device kind in that precision. "
            "Fractions are per device."
        )
    table = display_names(_impl_where_split(table, summary)).rename(
        columns={
            "images_per_s": "img/s",
            "achieved_gflops": "GFLOP/s",
            "ceiling_gflops": "own ceiling GFLOP/s",
            "device ceiling": "device ceiling GFLOP/s",
        }
    )
    return ReportTable("Achieved FLOP/s", table, notes, {"of device ceiling": ".1%", "of own ceiling": ".1%"})


ACCURACY_COLUMNS = {
    "top1": "top-1",
    "top5": "top-5",
    "test_loss": "test loss",
    "target_top1": "target top-1",
    "time_to_target_s": "time to target s",
    "train_seconds": "train s",
    "train_images_per_s": "train img/s",
}


def accuracy_tables(frame: pd.DataFrame) -> list[ReportTable]:
    """Accuracy runs side by side, and top-1 per epoch; shows whichever figures the rows have."""
    runs = frame[frame["mode"] == "accuracy"] if not frame.empty else frame
    if runs.empty:
        return []
    keys = ["environment", "variant", "split_impl", "train_dataset", "epochs", "batch_size", "framework"]
    table = runs[[*keys, "status", *ACCURACY_COLUMNS]].sort_values(keys[:-1], kind="stable")
    table = table.rename(columns={**ACCURACY_COLUMNS, "train_dataset": "data set"})
    # Columns no run has are left out; "never reached the target" (missing) stays when there is a target.
    keep = {"time to target s"} if table["target top-1"].notna().any() else set()
    empty = [c for c in ACCURACY_COLUMNS.values() if table[c].isna().all() and c not in keep]
    notes = ["time to target: training seconds until test top-1 first reached the target; missing if never."]
    tables = [
        ReportTable(
            "Accuracy",
            display_names(table.drop(columns=empty)),
            notes,
            {"top-1": ".1%", "top-5": ".1%", "target top-1": ".0%"},
        )
    ]
    curves = accuracy_curves(runs)
    if not curves.empty:
        wide = curves.pivot_table(index="epoch", columns="run", values="top1", aggfunc="first")
        wide.columns = [f"{run} top-1" for run in wide.columns]
        formats = {c: ".1%" for c in wide.columns}
        tables.append(ReportTable("Top-1 per epoch", wide.reset_index(), [], formats))
    return tables


def accuracy_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """The per-epoch curves of accuracy runs in long form: run, epoch and the curve's figures."""
    lines = []
    for _, run in runs.iterrows():
        label = f"{frameworks.label(run['framework'])} {run['variant']}"
        if run["environment"] != runs["environment"].iloc[0]:
            label += f" [{run['environment']}]"
        for point in run["curve"] if isinstance(run["curve"], list) else []:
            if isinstance(point, dict) and "epoch" in point:
                lines.append({"run": label, **point})
    return pd.DataFrame(lines)


def variants_table() -> ReportTable:
    """Every variant from the spec (no framework import): input, classes, parameters, forward FLOPs."""
    frame = variants_frame(every_variant()).rename(
        columns={"input_hwc": "input (HxWxC)", "forward_gflops": "forward GFLOPs/image"}
    )
    return ReportTable("Variants", frame, [], {"forward GFLOPs/image": ".3f"})


def layer_shapes_table() -> ReportTable:
    """ImageNet vs CIFAR-100, layer by layer (C x H x W), with the paper's neuron counts beside ImageNet's."""
    columns: dict[str, dict] = {}
    for dataset in ("imagenet", "cifar100"):
        for layout in ("single", "split"):
            for info in infer(get_variant(f"{dataset}-{layout}")):
                line = columns.setdefault(info.name, {"layer": info.name, "kind": info.kind})
                if layout == "single":
                    line[f"{dataset} shape"] = "x".join(map(str, info.output_shape))
                    line[f"{dataset} neurons"] = info.neurons
                line[f"{dataset} params ({layout})"] = info.params
    weight_layers = [name for name, line in columns.items() if line["kind"] in ("conv", "dense")]
    for name, paper in zip(weight_layers, PAPER_NEURONS, strict=True):
        computed = columns[name]["imagenet neurons"]
        columns[name]["paper neurons"] = paper
        columns[name]["paper check"] = "ok" if paper == computed else f"(!) paper {paper:,} vs computed {computed:,}"
    order = [
        "layer",
        "kind",
        "imagenet shape",
        "imagenet neurons",
        "paper neurons",
        "paper check",
        "imagenet params (single)",
        "imagenet params (split)",
        "cifar100 shape",
        "cifar100 neurons",
        "cifar100 params (single)",
        "cifar100 params (split)",
    ]
    frame = pd.DataFrame(list(columns.values()))[order]
    notes = [
        "shapes are C x H x W (PyTorch order). Paper neurons: section 3.5, conv1..fc8. (!) conv1: the paper says "
        "253,440, but its own 55x55x96 maps give 290,400 (a known inconsistency in the paper, not an error here).",
        "split: conv2, conv4 and conv5 see only their own tower, so they hold half the weights.",
    ]
    return ReportTable("Layers: ImageNet vs CIFAR-100", frame, notes)
