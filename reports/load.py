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
from benchmarks.measure.environment import machine_id
from benchmarks.results import OtherSchemaFileError, ResultRow, ResultsFileError, RowError, read_results

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
    read: dict[tuple[int, int], Path] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise ResultsLoadError(f"{path}: no such results file")
        identity = (path.stat().st_dev, path.stat().st_ino)  # a link or a second spelling is the same file
        if identity in read:
            warnings.append(f"{path} is the same file as {read[identity]}: read once")
            continue
        read[identity] = path
        if _is_pytest_benchmark(path):
            records += pytest_benchmark_records(path, warnings)
        else:
            try:
                loaded = read_results(path)
            except OtherSchemaFileError as error:  # another version's rows: read them with the suite that wrote them
                raise ResultsLoadError(
                    f"{error}: read it with the version of the suite that wrote it, or measure its cells again "
                    "with this one"
                ) from None
            except ResultsFileError as error:
                raise ResultsLoadError(str(error)) from None
            warnings += loaded.warnings
            rows = [row_record(row, str(path)) for row in newest_per_key(loaded.rows)]
            warnings += unknown_variant_warnings(
                {f"{path} line {record['line']}": record["variant"] for record in rows}
            )
            records += rows
    frame = finish_frame(records)
    environments = environment_frame(frame)
    if not environments.empty and environments["machine_id"].nunique() > 1:
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


def frame_from_rows(rows: list[ResultRow | dict], source: str = "") -> pd.DataFrame:
    """The tidy frame of rows already read, or of rows in their JSON form (``bench.py run``'s summary)."""
    typed = [row if isinstance(row, ResultRow) else ResultRow.from_dict(row, line) for line, row in enumerate(rows, 1)]
    return finish_frame([row_record(row, source) for row in typed])


def newest_per_key(rows: list[ResultRow]) -> list[ResultRow]:
    """A job run again (a ``--resume`` retry, a rerun) supersedes its older rows: it is not a repeat."""
    return list({row.key: row for row in rows}.values())


def _number(value: object) -> float:
    """A figure as float; anything absent or non-numeric is NaN (missing), never zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _whole(value: object) -> int:
    """A count as int; anything absent or not a whole number is 0 (the field's default)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _sum_or_nan(values: list) -> float:
    numbers = [_number(v) for v in values]
    numbers = [n for n in numbers if not math.isnan(n)]
    return float(sum(numbers)) if numbers else math.nan


def _memory_columns(memory: dict) -> dict:
    nvml = _dict(memory.get("nvml"))
    devices = [d for d in nvml.get("devices") or [] if isinstance(d, dict)]
    framework = _dict(memory.get("framework"))
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


def row_record(row: ResultRow, source: str) -> dict:
    """One results row as a flat record; figures of a failed cell are NaN."""
    metrics = (row.metrics or {}) if row.ok else {}
    return {
        "source": source,
        "line": row.line,
        "source_kind": "results",
        "run_id": row.run_id,
        "key": row.key,
        # A paired comparison's side (``bench.py ab``): tables keep base and new apart under their environment.
        "side": row.side,
        "pair": row.paired["pair"] if row.paired else None,
        **_cell_columns(row.cell),
        "device_setup": row.device_setup,
        "devices": row.devices,
        "parallel": row.parallel,
        "simulated": bool(row.simulated),
        "status": row.status,
        "error": row.error,
        **_timing_columns(metrics, row.ok),
        **_memory_columns(_dict(metrics.get("memory"))),
        **_accuracy_columns(row.cell, metrics),
        **_environment_columns(row.environment, gpu_used=_whole(row.cell.get("gpus")) > 0),
        "started_at": row.started_at,
    }


def _cell_columns(cell: dict) -> dict:
    dataset, layout = variant_parts(cell["variant"])
    precision = cell.get("precision", "fp32")
    math_mode = cell.get("math_mode") or ("bf16" if precision == "bf16" else "fp32")  # rows before the field
    return {
        "framework": cell["framework"],
        "variant": cell["variant"],
        "dataset": dataset,
        "layout": layout,
        "split_impl": cell.get("split_impl", "grouped"),
        "fast_path": fast_path_label(
            precision,
            cell.get("compiled", False),
            cell.get("channels_last", False),
            math_mode,
            cell.get("xeon_launch", False),
            cell.get("cuda_graphs", False),
        ),
        "precision": precision,
        "math_mode": math_mode,
        "mode": cell["mode"],
        "batch_size": cell["batch_size"],
        "repeat": _whole(cell.get("repeat")),
        "seed": cell.get("seed"),
        "gpus": _whole(cell.get("gpus")),
        "simulate_devices": _whole(cell.get("simulate_devices")),
        "nodes": _whole(cell.get("nodes")) or 1,  # rows before multi-node runs: one machine
    }


def _measured(value: object) -> float:
    """A time or a rate: a step takes some time, so zero, a negative or an infinite figure was not measured (NaN),
    and is shown as such instead of dividing by it."""
    number = _number(value)
    return number if math.isfinite(number) and number > 0 else math.nan


def _step_times(steps: object, ok: bool) -> list[float] | None:
    """A row's per-step seconds; None (no samples) when any of them is not a measured time."""
    if not ok or not isinstance(steps, list):
        return None
    times = [_measured(t) for t in steps]
    return None if any(math.isnan(t) for t in times) else times


def _timing_columns(metrics: dict, ok: bool) -> dict:
    return {
        **{name: _measured(metrics.get(name)) for name in _TIMING},
        "iqr_step_s": _number(metrics.get("iqr_step_s")),  # zero when every step took the same time
        "steps_timed": _number(metrics.get("steps")),
        "step_times_s": _step_times(metrics.get("step_times_s"), ok),
        "flops_per_image": _number(metrics.get("flops_per_image")),
        "achieved_gflops": _measured(metrics.get("achieved_flops_per_s")) / 1e9,
        "ceiling_gflops": _number(metrics.get("ceiling_flops_per_s")) / 1e9,
        # GPU rows: NVML's energy counter over the timed steps (the whole device), and per image timed.
        "energy_j": _number(metrics.get("energy_j")),
        "energy_per_image_j": _number(metrics.get("energy_per_image_j")),
        # Other processes' CPU and steal beside the timed steps, in cores (benchmarks.measure.machine_load).
        "other_load_cores": _other_load(_dict(metrics.get("machine_load"))),
    }


def _other_load(load: dict) -> float:
    """Cores' worth of other work beside the cell: nan where unmeasured, and for a cell of several processes,
    whose own other ranks the measure cannot tell from other tenants."""
    if not load.get("measured") or _number(load.get("processes_in_cell")) != 1:
        return math.nan
    return _number(load.get("other_processes_cores")) + _number(load.get("steal_cores"))


_TIMING = ("images_per_s", "images_per_s_q25", "images_per_s_q75", "median_step_s", "iqr_step_s", "first_step_s",
           "build_s")  # fmt: skip
_ACCURACY = ("top1", "top5", "test_loss", "target_top1", "time_to_target_s", "train_seconds", "train_images_per_s")


def _accuracy_columns(cell: dict, metrics: dict) -> dict:
    """Accuracy rows (mode "accuracy"): whatever of these the row has."""
    curve = metrics.get("curve")
    return {
        "train_dataset": cell.get("dataset"),
        "epochs": _number(cell.get("epochs")),
        **{name: _number(metrics.get(name)) for name in _ACCURACY},
        "curve": curve if isinstance(curve, list) else None,
    }


def _environment_columns(environment: dict, gpu_used: bool) -> dict:
    git = _dict(environment.get("git"))
    gpus = environment.get("gpus") if isinstance(environment.get("gpus"), list) else []
    return {
        "machine_id": machine_id(environment),
        "hostname": environment.get("hostname"),
        "cpu_model": environment.get("cpu_model"),
        "gpu_names": ", ".join(map(str, gpus)) or "none",
        "framework_version": framework_summary(_dict(environment.get("framework")), gpu_used=gpu_used),
        "commit": git.get("commit"),
        "dirty": git.get("dirty"),
        "environment_detail": environment,
    }


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


# A pytest-benchmark file is one JSON object read whole; a larger file is taken for JSON Lines, read line by line.
PYTEST_BENCHMARK_MAX_BYTES = 256 << 20


def _is_pytest_benchmark(path: Path) -> bool:
    """pytest-benchmark writes one JSON object with a 'benchmarks' list; results files are JSON Lines."""
    with open(path, "rb") as handle:
        opens_an_object = handle.read(4096).lstrip().startswith(b"{")
    if not opens_an_object or path.stat().st_size > PYTEST_BENCHMARK_MAX_BYTES:
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and isinstance(data.get("benchmarks"), list) and "schema_version" not in data


def unknown_variant_warnings(variants: dict[str, str]) -> list[str]:
    """One line per variant name that this suite cannot build, from {where a row was read: its variant}.

    Such rows stay readable: every table reads a variant by its name (:func:`variant_parts`), and only the
    fast-path baseline needs the spec, which then reads the name too. The reader is told, not refused.
    """
    from implementations.variants import VARIANTS

    unknown: dict[str, list[str]] = {}
    for where, variant in variants.items():
        if variant not in VARIANTS:
            unknown.setdefault(variant, []).append(where)
    lines = []
    for variant, places in unknown.items():
        more = f" (and {len(places) - 1} more)" if len(places) > 1 else ""
        lines.append(
            f"{places[0]}{more}: variant {variant!r} is not one this suite knows (valid variants: "
            f"{', '.join(VARIANTS)}); its rows are reported under that name"
        )
    return lines


def pytest_benchmark_records(path: Path, warnings: list[str] | None = None) -> list[dict]:
    """Records from ``pytest --benchmark-json``: framework/variant/mode/batch from extra_info (or params);
    images/s = batch / median, its quartiles batch / q3 and batch / q1; samples from stats.data.

    A benchmark without a variant is named by its group (or its name); a variant the suite does not know is
    appended to ``warnings``, and its rows kept."""
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
    variants: dict[str, str] = {}
    for index, bench in enumerate(data["benchmarks"], start=1):
        where = f"{path} benchmark {index}"
        if not isinstance(bench, dict):
            raise ResultsLoadError(f"{where}: not an object; not pytest-benchmark output")
        stats = bench.get("stats")
        if not isinstance(stats, dict) or "median" not in stats:
            raise ResultsLoadError(f"{where} ({bench.get('name')!r}): no stats.median; not pytest-benchmark output")
        info = {**(bench.get("params") or {}), **(bench.get("extra_info") or {})}
        batch = info.get("batch_size", info.get("batch"))
        whole = isinstance(batch, (int, float)) and not isinstance(batch, bool) and math.isfinite(batch)
        if not whole or not 0 < batch == int(batch):
            # Images/s is the batch over the step's time: without the batch there is no figure to report.
            raise ResultsLoadError(
                f"{where} ({bench.get('name')!r}): no batch size (a whole number in extra_info['batch_size'] or "
                f"params['batch_size'], got {batch!r}), so no images/s; record it with benchmark.extra_info"
            )
        batch = int(batch)
        gpus = _whole(info.get("gpus"))
        try:
            row = ResultRow(
                key=str(bench.get("fullname") or bench.get("name")),
                run_id=str(data.get("datetime") or path.stem),
                cell={
                    "framework": str(info.get("framework", "unknown")),
                    "variant": str(info.get("variant", bench.get("group") or bench.get("name"))),
                    "mode": str(info.get("mode", "unknown")),
                    "batch_size": batch,
                    "split_impl": info.get("split_impl", "grouped"),
                    "gpus": gpus,
                },
                status="ok",
                device_setup=str(info.get("device_setup") or (f"{gpus} gpu" if gpus else "cpu")),
                devices=int(info.get("devices", max(gpus, 1))),
                parallel=str(info.get("parallel", "none")),
                simulated=bool(info.get("simulated", False)),
                environment=environment,
                started_at=data.get("datetime"),
                metrics=_pytest_benchmark_metrics(stats, batch, info),
                line=index,
            )
        except (RowError, TypeError, ValueError) as error:
            raise ResultsLoadError(f"{where}: {error}") from None
        record = row_record(row, str(path))
        record.update(source_kind="pytest-benchmark", benchmark_name=bench.get("name"))
        records.append(record)
        named = "" if "variant" in info else ", no extra_info['variant'], named by its group"
        variants[f"{where} ({bench.get('name')!r}{named})"] = record["variant"]
    if warnings is not None:
        warnings += unknown_variant_warnings(variants)
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
    environment = frame["machine_id"].map(labels)
    if "side" in frame:  # a paired comparison's two builds, measured on one machine, are never pooled
        sides = frame["side"].fillna("")
        environment = environment.where(sides == "", environment + " (" + sides + ")")
    frame.insert(0, "environment", environment)
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
