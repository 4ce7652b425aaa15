"""Results files (and pytest-benchmark JSON) as one tidy pandas table, one line per row.

Rows are validated: another schema version is refused by ``benchmarks.results.read_results``, a
row without the fields a report needs is refused here with its file and line. Failed cells keep
their status and error and have missing (NaN) figures, never zeros. Rows from several machines
are kept apart by an ``environment`` label, and the loader says so in its warnings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmarks.cell import fast_path_label
from benchmarks.environment import machine_id
from benchmarks.results import ResultsFileError, read_results

REQUIRED_ROW_FIELDS = ("key", "run_id", "cell", "status", "device_setup", "environment")
REQUIRED_CELL_FIELDS = ("framework", "variant", "mode", "batch_size")
# Columns whose values are lists or dicts (per-step samples, accuracy curve): JSON text in CSV/Parquet.
NESTED_COLUMNS = ("step_times_s", "curve")
MIB = 2**20


class ResultsLoadError(ResultsFileError):
    """A results file cannot be reported on; the message names the file, the line and the reason."""


@dataclass
class LoadedFrame:
    """The tidy table, what the loader wants the reader to know, and one line per environment."""

    frame: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    environments: pd.DataFrame = field(default_factory=pd.DataFrame)


def load_results(paths: Sequence[Path]) -> LoadedFrame:
    """Load results files (JSON Lines) and pytest-benchmark JSON files into one tidy frame."""
    if not paths:
        raise ResultsLoadError("no results files given")
    records: list[dict] = []
    warnings: list[str] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise ResultsLoadError(f"{path}: no such results file")
        if _is_pytest_benchmark(path):
            records += pytest_benchmark_records(path)
        else:
            try:
                loaded = read_results(path)
            except ResultsFileError as error:  # another schema version: refused, said as a load error
                raise ResultsLoadError(str(error)) from None
            warnings += loaded.warnings
            records += [
                row_record(row, str(path), line) for row, line in zip(loaded.rows, _row_lines(path), strict=True)
            ]
    frame = finish_frame(records)
    environments = environment_frame(frame)
    if len(environments) > 1:
        ids = "; ".join(f"{row.environment} = {row.machine_id}" for row in environments.itertuples())
        warnings.append(
            f"results come from {len(environments)} different machines ({ids}); they are not mixed: "
            "every table is grouped by environment"
        )
    if not frame.empty:
        for label, commits in frame.groupby("environment", sort=False)["commit"].nunique().items():
            if commits > 1:
                warnings.append(f"{label}: rows from {commits} different commits; see the environment block")
    return LoadedFrame(frame, warnings, environments)


def frame_from_rows(rows: list[dict], source: str = "") -> pd.DataFrame:
    """The tidy frame of rows already read (``bench.py run``'s summary uses it)."""
    return finish_frame([row_record(row, source, index) for index, row in enumerate(rows, start=1)])


def _row_lines(path: Path) -> list[int]:
    """Line numbers of the rows ``read_results`` returns (it skips blank and torn lines)."""
    numbers = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except json.JSONDecodeError:
            continue
        numbers.append(number)
    return numbers


def _check_row(row: dict, where: str) -> None:
    missing = [name for name in REQUIRED_ROW_FIELDS if name not in row]
    cell = row.get("cell")
    if isinstance(cell, dict):
        missing += [f"cell.{name}" for name in REQUIRED_CELL_FIELDS if name not in cell]
    elif "cell" in row:
        missing.append("cell (not an object)")
    if row.get("status") == "ok" and not isinstance(row.get("metrics"), dict):
        missing.append("metrics (a row with status ok must have its figures)")
    if missing:
        raise ResultsLoadError(
            f"{where}: row is missing required field(s): {', '.join(missing)}; it cannot be reported"
        )


def _number(value: object) -> float:
    """A figure as float; anything absent or non-numeric is NaN (missing), never zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _sum_or_nan(values: list) -> float:
    numbers = [_number(v) for v in values]
    numbers = [n for n in numbers if not math.isnan(n)]
    return float(sum(numbers)) if numbers else math.nan


def _memory_columns(memory: dict) -> dict:
    nvml = memory.get("nvml") or {}
    devices = nvml.get("devices") or []
    framework = memory.get("framework") or {}
    # PyTorch reports max_allocated_bytes per device, TensorFlow peak_bytes: summed over devices.
    framework_peak = framework.get("max_allocated_bytes") or framework.get("peak_bytes") or []
    return {
        "peak_rss_mib": _number(memory.get("peak_rss_bytes")) / MIB,
        "nvml_peak_mib": _sum_or_nan([d.get("peak_used_bytes") for d in devices]) / MIB,
        "nvml_before_mib": _sum_or_nan([d.get("used_before_bytes") for d in devices]) / MIB,
        "framework_peak_mib": _sum_or_nan(framework_peak if isinstance(framework_peak, list) else [framework_peak])
        / MIB,
    }


def variant_parts(variant: str) -> tuple[str, str]:
    """(dataset geometry, tower layout) of a variant name: ('imagenet', 'split'), ('other', 'tutorial')."""
    dataset, _, layout = variant.partition("-")
    if dataset in ("imagenet", "cifar100") and layout in ("single", "split"):
        return dataset, layout
    return "other", variant


def row_record(row: dict, source: str, line: int) -> dict:
    """One results row as a flat record; figures of a failed cell are NaN."""
    _check_row(row, f"{source or 'results'} line {line}")
    cell, environment = row["cell"], row.get("environment") or {}
    ok = row["status"] == "ok"
    metrics = (row.get("metrics") or {}) if ok else {}
    framework_env = environment.get("framework") or {}
    git = environment.get("git") or {}
    dataset, layout = variant_parts(cell["variant"])
    record = {
        "source": source,
        "line": line,
        "source_kind": "results",
        "run_id": row["run_id"],
        "key": row["key"],
        "framework": cell["framework"],
        "variant": cell["variant"],
        "dataset": dataset,
        "layout": layout,
        "split_impl": cell.get("split_impl", "grouped"),
        "fast_path": fast_path_label(
            cell.get("precision", "fp32"), cell.get("compiled", False), cell.get("channels_last", False)
        ),
        "precision": cell.get("precision", "fp32"),
        "mode": cell["mode"],
        "batch_size": int(cell["batch_size"]),
        "repeat": int(cell.get("repeat", 0)),
        "seed": cell.get("seed"),
        "gpus": int(cell.get("gpus", 0)),
        "simulate_devices": int(cell.get("simulate_devices", 0)),
        "device_setup": row["device_setup"],
        "devices": int(row.get("devices", 1)),
        "parallel": row.get("parallel", "none"),
        "simulated": bool(row.get("simulated", False)),
        "status": row["status"],
        "error": row.get("error"),
        "images_per_s": _number(metrics.get("images_per_s")),
        "images_per_s_q25": _number(metrics.get("images_per_s_q25")),
        "images_per_s_q75": _number(metrics.get("images_per_s_q75")),
        "median_step_s": _number(metrics.get("median_step_s")),
        "iqr_step_s": _number(metrics.get("iqr_step_s")),
        "first_step_s": _number(metrics.get("first_step_s")),
        "build_s": _number(metrics.get("build_s")),
        "steps_timed": _number(metrics.get("steps")),
        "step_times_s": [float(t) for t in metrics.get("step_times_s") or []] if ok else None,
        **_memory_columns(metrics.get("memory") or {}),
        "flops_per_image": _number(metrics.get("flops_per_image")),
        "achieved_gflops": _number(metrics.get("achieved_flops_per_s")) / 1e9,
        "ceiling_gflops": _number(metrics.get("ceiling_flops_per_s")) / 1e9,
        # Accuracy rows (mode "accuracy"): whatever of these the row has.
        "train_dataset": cell.get("dataset"),
        "epochs": _number(cell.get("epochs")),
        "top1": _number(metrics.get("top1")),
        "top5": _number(metrics.get("top5")),
        "test_loss": _number(metrics.get("test_loss")),
        "target_top1": _number(metrics.get("target_top1")),
        "time_to_target_s": _number(metrics.get("time_to_target_s")),
        "train_seconds": _number(metrics.get("train_seconds")),
        "train_images_per_s": _number(metrics.get("train_images_per_s")),
        "curve": metrics.get("curve") if isinstance(metrics.get("curve"), list) else None,
        "machine_id": machine_id(environment),
        "hostname": environment.get("hostname"),
        "cpu_model": environment.get("cpu_model"),
        "gpu_names": ", ".join(environment.get("gpus") or []) or "none",
        "framework_version": framework_summary(framework_env, gpu_used=int(cell.get("gpus", 0)) > 0),
        "commit": git.get("commit"),
        "dirty": git.get("dirty"),
        "started_at": row.get("started_at"),
        "environment_detail": environment,
    }
    return record


BUILD_ONLY = {"cuda": "built with CUDA", "cudnn": "built with cuDNN"}


def framework_summary(framework_env: dict, gpu_used: bool = True) -> str | None:
    """'torch 2.13.0+cpu, threads 2' from a worker's framework environment.

    Without a GPU, the CUDA and cuDNN a framework reports are those it was built against (TensorFlow
    reports its build's on any machine), so they read 'built with CUDA 12.5' rather than as used.
    """
    if not isinstance(framework_env, dict) or not framework_env:
        return None
    if not gpu_used:
        framework_env = {BUILD_ONLY.get(name, name): value for name, value in framework_env.items()}
    first = ("torch", "keras", "backend", "tensorflow", "cuda", "cudnn", *BUILD_ONLY.values())
    names = [n for n in first if n in framework_env] + sorted(set(framework_env) - set(first))
    parts = [
        f"{name} {framework_env[name]}"
        for name in names
        if name not in ("framework", "devices") and framework_env[name] not in (None, "", [])
    ]
    return ", ".join(parts) or None


def _is_pytest_benchmark(path: Path) -> bool:
    """pytest-benchmark writes one JSON object with a 'benchmarks' list; results files are JSON Lines."""
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and isinstance(data.get("benchmarks"), list) and "schema_version" not in data


def pytest_benchmark_records(path: Path) -> list[dict]:
    """Records from ``pytest --benchmark-json``: framework/variant/mode/batch from extra_info (or params);
    images/s = batch / median, its quartiles batch / q3 and batch / q1; samples from stats.data."""
    data = json.loads(path.read_text(encoding="utf-8"))
    machine = data.get("machine_info") or {}
    commit = data.get("commit_info") or {}
    cpu = machine.get("cpu") or {}
    environment = {
        "hostname": machine.get("node"),
        "cpu_model": cpu.get("brand_raw") or machine.get("processor"),
        "gpus": machine.get("gpus") or [],
        "python": machine.get("python_version"),
        "platform": machine.get("platform") or machine.get("system"),
        "git": {"commit": commit.get("id"), "dirty": commit.get("dirty")},
        "framework": None,
    }
    records = []
    for index, bench in enumerate(data["benchmarks"], start=1):
        where = f"{path} benchmark {index}"
        stats = bench.get("stats")
        if not isinstance(stats, dict) or "median" not in stats:
            raise ResultsLoadError(f"{where} ({bench.get('name')!r}): no stats.median; not pytest-benchmark output")
        info = {**(bench.get("params") or {}), **(bench.get("extra_info") or {})}
        batch = info.get("batch_size", info.get("batch"))
        batch = int(batch) if isinstance(batch, (int, float)) else None
        gpus = int(info.get("gpus", 0) or 0)
        row = {
            "key": bench.get("fullname") or bench.get("name"),
            "run_id": data.get("datetime") or path.stem,
            "cell": {
                "framework": info.get("framework", "unknown"),
                "variant": info.get("variant", bench.get("group") or bench.get("name")),
                "mode": info.get("mode", "unknown"),
                "batch_size": batch or 0,
                "split_impl": info.get("split_impl", "grouped"),
                "gpus": gpus,
            },
            "status": "ok",
            "device_setup": info.get("device_setup") or (f"{gpus} gpu" if gpus else "cpu"),
            "devices": int(info.get("devices", max(gpus, 1))),
            "parallel": info.get("parallel", "none"),
            "simulated": bool(info.get("simulated", False)),
            "environment": environment,
            "started_at": data.get("datetime"),
            "metrics": _pytest_benchmark_metrics(stats, batch, info),
        }
        record = row_record(row, str(path), index)
        record.update(source_kind="pytest-benchmark", benchmark_name=bench.get("name"))
        records.append(record)
    return records


def _pytest_benchmark_metrics(stats: dict, batch: int | None, info: dict) -> dict:
    median, q1, q3 = (_number(stats.get(name)) for name in ("median", "q1", "q3"))

    def rate(seconds: float) -> float | None:
        return batch / seconds if batch and seconds and not math.isnan(seconds) else None

    metrics = {
        "images_per_s": rate(median),
        "images_per_s_q25": rate(q3),
        "images_per_s_q75": rate(q1),
        "median_step_s": median,
        "iqr_step_s": _number(stats.get("iqr")),
        "steps": stats.get("rounds"),
        "step_times_s": stats.get("data") or [],
    }
    for name in ("ceiling_flops_per_s", "flops_per_image", "memory"):
        if name in info:
            metrics[name] = info[name]
    if "flops_per_image" in info and metrics["images_per_s"]:
        metrics["achieved_flops_per_s"] = info["flops_per_image"] * metrics["images_per_s"]
    return metrics


def finish_frame(records: list[dict]) -> pd.DataFrame:
    """Records to a frame with an ``environment`` label per machine (its hostname when unambiguous)."""
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return frame
    ids = list(dict.fromkeys(frame["machine_id"]))
    hosts = {mid: frame.loc[frame["machine_id"] == mid, "hostname"].iloc[0] or "unknown host" for mid in ids}
    labels = {}
    for number, mid in enumerate(ids, start=1):
        clash = list(hosts.values()).count(hosts[mid]) > 1
        labels[mid] = f"{hosts[mid]} #{number}" if clash else hosts[mid]
    frame.insert(0, "environment", frame["machine_id"].map(labels))
    return frame


def environment_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per environment: machine, CPU, GPUs, frameworks, commits and dates of its rows."""
    if frame.empty:
        return pd.DataFrame()
    lines = []
    for label, group in frame.groupby("environment", sort=False):
        detail = group["environment_detail"].iloc[0]
        started = group["started_at"].dropna().astype(str).sort_values()
        commits = [
            f"{str(c)[:10]}{' (dirty)' if d else ''}"
            for c, d in group[["commit", "dirty"]].drop_duplicates().itertuples(index=False)
            if c is not None
        ]
        lines.append(
            {
                "environment": label,
                "machine_id": group["machine_id"].iloc[0],
                "hostname": detail.get("hostname"),
                "cpu": f"{detail.get('cpu_model') or 'unknown'}"
                + (f" ({detail['cpu_count']} cores)" if detail.get("cpu_count") else ""),
                "gpus": group["gpu_names"].iloc[0],
                "gpu_driver": detail.get("gpu_driver"),
                "platform": detail.get("platform"),
                "python": detail.get("python"),
                "frameworks": "; ".join(sorted({v for v in group["framework_version"].dropna()})) or "unknown",
                "commits": ", ".join(dict.fromkeys(commits)) or "unknown",
                "dates": f"{started.iloc[0][:19]} to {started.iloc[-1][:19]}" if len(started) else "unknown",
                "runs": group["run_id"].nunique(),
                "rows": len(group),
                "sources": ", ".join(dict.fromkeys(group["source"])),
            }
        )
    return pd.DataFrame(lines)


def flat_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame for CSV/Parquet: nested columns as JSON text, the raw environment dropped."""
    flat = frame.drop(columns=["environment_detail"], errors="ignore").copy()
    for column in NESTED_COLUMNS:
        if column in flat:
            flat[column] = [None if v is None else json.dumps(v) for v in flat[column]]
    return flat
