"""The reporting layer: loading and validation, tables, plots, Markdown/HTML and the report directory."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import results_factory as factory
from rich.console import Console

from benchmarks.cell import CellConfig
from benchmarks.measure.environment import machine_id
from reports import build, cell_summary, plots, tables
from reports.build import build_report, write_report
from reports.load import ResultsLoadError, frame_from_rows, load_results
from reports.render import MISSING, ReportTable, format_value, markdown_table, render_markdown
from reports.summary import render_throughput, rows_to_frame

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _table_rows(markdown: str, title: str) -> list[dict[str, str]]:
    """The body of the Markdown pipe table under ``### title``, as dicts keyed by header."""
    table: list[str] = []
    for line in markdown.split(f"### {title}\n", 1)[1].splitlines()[1:]:
        if not line.startswith("|"):
            break
        table.append(line)

    def split(line: str) -> list[str]:
        return [cell.strip() for cell in line.strip("|").split(" | ")]

    header = split(table[0])
    return [dict(zip(header, split(line), strict=True)) for line in table[2:]]


@pytest.fixture
def sweep_file(tmp_path: Path) -> Path:
    rows = factory.sweep(seed=1)
    oom = CellConfig("keras", "imagenet-single", "train", 256, split_impl="towers")
    rows.append(factory.failed_row(oom, "oom"))
    return factory.write_rows(tmp_path / "results.jsonl", rows)


def test_load_gives_one_line_per_row_with_config_status_and_environment(sweep_file: Path) -> None:
    loaded = load_results([sweep_file])
    frame = loaded.frame
    assert len(frame) == 9
    assert loaded.warnings == []
    first = frame.iloc[0]
    assert first["machine_id"] == machine_id(factory.machine())
    assert first["run_id"] == "run-1" and first["commit"].startswith("0123456789")
    assert {
        "framework",
        "variant",
        "split_impl",
        "mode",
        "batch_size",
        "device_setup",
        "parallel",
        "simulated",
        "status",
        "images_per_s",
        "peak_rss_mib",
        "environment",
    } <= set(frame.columns)
    assert first["images_per_s"] == pytest.approx(32 / np.median(first["step_times_s"]))


def test_failed_cell_keeps_status_and_error_with_missing_figures(sweep_file: Path) -> None:
    frame = load_results([sweep_file]).frame
    failed = frame[frame["status"] == "oom"].iloc[0]
    assert "out of memory" in failed["error"]
    for column in ("images_per_s", "median_step_s", "peak_rss_mib", "achieved_gflops"):
        assert math.isnan(failed[column]), column


def test_a_row_missing_a_required_field_is_skipped_naming_file_and_line(tmp_path: Path) -> None:
    rows = factory.sweep(seed=1, frameworks=("torch",), variants=("imagenet-single",), modes=("infer", "train"))
    del rows[1]["cell"]["batch_size"]
    path = factory.write_rows(tmp_path / "broken.jsonl", rows)
    loaded = load_results([path])
    assert any(re.search(r"broken\.jsonl: line 2 is damaged \(.*cell\.batch_size", w) for w in loaded.warnings)
    assert len(loaded.frame) == len(rows) - 1  # the good rows stay readable
    del rows[0]["cell"]["batch_size"]
    first = factory.write_rows(tmp_path / "first.jsonl", rows)
    with pytest.raises(ResultsLoadError, match=r"first\.jsonl line 1: .*cell\.batch_size"):
        load_results([first])  # a first line that is not a row: not a results file


def test_an_ok_row_without_metrics_is_refused(tmp_path: Path) -> None:
    rows = factory.sweep(seed=1, frameworks=("torch",), variants=("imagenet-single",), modes=("infer",))
    rows[0]["metrics"] = None
    path = factory.write_rows(tmp_path / "r.jsonl", rows)
    with pytest.raises(ResultsLoadError, match="line 1: .*metrics"):
        load_results([path])


def test_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = factory.write_rows(tmp_path / "r.jsonl", factory.sweep(seed=1, frameworks=("torch",), modes=("infer",)))
    lines = path.read_text().splitlines()
    row = json.loads(lines[0])
    row["schema_version"] = 99
    path.write_text("\n".join([lines[0], json.dumps(row)]) + "\n")
    with pytest.raises(ResultsLoadError, match="line 2: results schema version 99"):
        load_results([path])


def test_missing_file_and_torn_last_line(tmp_path: Path, sweep_file: Path) -> None:
    with pytest.raises(ResultsLoadError, match="no such results file"):
        load_results([tmp_path / "nope.jsonl"])
    with sweep_file.open("a") as handle:
        handle.write('{"schema_version": 1, "cell": {"fram')
    loaded = load_results([sweep_file])
    assert len(loaded.frame) == 9
    assert any("incomplete" in w for w in loaded.warnings)


def test_two_machines_warn_and_every_table_is_grouped_by_environment(tmp_path: Path) -> None:
    a = factory.write_rows(tmp_path / "a.jsonl", factory.sweep(seed=1, host=factory.machine("bench-a")))
    b = factory.write_rows(tmp_path / "b.jsonl", factory.sweep(seed=2, host=factory.machine("bench-b", gpus=("H100",))))
    loaded = load_results([a, b])
    assert len(loaded.warnings) == 1 and "2 different machines" in loaded.warnings[0]
    assert sorted(loaded.environments["environment"]) == ["bench-a", "bench-b"]
    summary = cell_summary.summarize_cells(loaded.frame)
    comparison = tables.framework_table(summary).frame
    assert len(comparison) == 8  # 2 variants x 2 modes x 2 machines: never pooled across machines
    assert set(comparison["environment"]) == {"bench-a", "bench-b"}
    report, _ = build_report(loaded)
    markdown = render_markdown(report)
    assert "2 different machines" in markdown
    for row in _table_rows(markdown, "Keras vs PyTorch"):
        assert row["environment"] in ("bench-a", "bench-b")


def test_same_hostname_on_two_machines_gets_two_labels(tmp_path: Path) -> None:
    a = factory.write_rows(tmp_path / "a.jsonl", factory.sweep(seed=1, modes=("infer",), host=factory.machine("vm")))
    b = factory.write_rows(
        tmp_path / "b.jsonl", factory.sweep(seed=1, modes=("infer",), host=factory.machine("vm", cpu="Intel Xeon"))
    )
    assert set(load_results([a, b]).frame["environment"]) == {"vm #1", "vm #2"}


def test_failed_cells_show_their_status_and_missing_never_zero_in_markdown(sweep_file: Path) -> None:
    report, _ = build_report(load_results([sweep_file]))
    markdown = render_markdown(report)
    cells = [r for r in _table_rows(markdown, "All cells") if r["batch"] == "256"]
    assert len(cells) == 1
    assert cells[0]["status"] == "oom"
    assert cells[0]["img/s"] == MISSING and cells[0]["IQR"] == MISSING and cells[0]["GFLOP/s"] == MISSING
    failures = _table_rows(markdown, "Failed cells")
    assert failures[0]["status"] == "oom" and "out of memory" in failures[0]["error"]
    keras_vs_torch = [r for r in _table_rows(markdown, "Keras vs PyTorch") if r["batch"] == "256"]
    assert keras_vs_torch[0]["Keras status"] == "oom" and keras_vs_torch[0]["PyTorch status"] == "missing"
    assert keras_vs_torch[0]["Keras img/s"] == MISSING and keras_vs_torch[0]["faster"] == "not comparable"


def test_format_value_precision_and_missing() -> None:
    assert [format_value(v) for v in (None, math.nan, pd.NA, 0.0, 0, 1234.5, 97.25, 3.14159, 0.012345, True)] == [
        MISSING,
        MISSING,
        MISSING,
        "0",
        "0",
        "1,234",
        "97.2",
        "3.14",
        "0.0123",
        "yes",
    ]
    assert format_value(0.253, ".1%") == "25.3%"


def test_pipe_tables_escape_and_hide_a_single_environment() -> None:
    frame = pd.DataFrame({"environment": ["vm", "vm"], "name": ["a|b", "c"], "value": [1.5, math.nan]})
    text = markdown_table(ReportTable("T", frame, ["a note"]))
    assert "environment" not in text
    assert "| a\\|b | 1.50 |" in text and f"| c | {MISSING} |" in text
    assert "|---|---:|" in text and "> a note" in text


def _summary(torch_times: list[float], keras_times: list[float]) -> pd.DataFrame:
    rows = [
        factory.ok_row(CellConfig("torch", "imagenet-single", "infer", 32), torch_times),
        factory.ok_row(CellConfig("keras", "imagenet-single", "infer", 32, split_impl="towers"), keras_times),
    ]
    return cell_summary.summarize_cells(frame_from_rows(rows))


def test_ratio_has_no_clear_winner_when_the_distributions_overlap() -> None:
    rng = np.random.default_rng(3)
    same = _summary(factory.step_times(rng, 0.3, 20, 0.1), factory.step_times(rng, 0.3, 20, 0.1))
    line = tables.framework_table(same).frame.iloc[0]
    low, high = map(float, line["95% interval"].split("–"))
    assert low < 1 < high
    assert line["faster"] == "no clear winner"


def test_ratio_names_the_faster_framework_when_the_interval_excludes_one() -> None:
    rng = np.random.default_rng(3)
    faster_keras = _summary(factory.step_times(rng, 0.3, 20, 0.05), factory.step_times(rng, 0.2, 20, 0.05))
    line = tables.framework_table(faster_keras).frame.iloc[0]
    assert line["Keras/PyTorch"] == pytest.approx(1.5, rel=0.05)
    assert float(line["95% interval"].split("–")[0]) > 1
    assert line["faster"] == "Keras"


def test_ratio_falls_back_to_quartile_throughputs_without_samples() -> None:
    rng = np.random.default_rng(3)
    summary = _summary(factory.step_times(rng, 0.3, 20, 0.05), factory.step_times(rng, 0.2, 20, 0.05))
    summary["samples"] = [[], []]
    torch_line, keras_line = summary.iloc[0], summary.iloc[1]
    ratio, low, high = cell_summary.ratio_interval(torch_line, keras_line)
    assert low == pytest.approx(keras_line["images_per_s_q25"] / torch_line["images_per_s_q75"])
    assert high == pytest.approx(keras_line["images_per_s_q75"] / torch_line["images_per_s_q25"])


def test_repeats_are_pooled_into_one_cell() -> None:
    rows = factory.sweep(
        seed=4, frameworks=("torch",), variants=("imagenet-single",), modes=("infer",), repeats=3, steps=10
    )
    summary = cell_summary.summarize_cells(frame_from_rows(rows))
    assert len(summary) == 1 and summary.iloc[0]["repeats"] == 3
    pooled = [t for row in rows for t in row["metrics"]["step_times_s"]]
    assert summary.iloc[0]["images_per_s"] == pytest.approx(32 / np.median(pooled))


def test_formulation_layout_and_dataset_tables() -> None:
    rng = np.random.default_rng(5)
    rows = [
        factory.ok_row(
            CellConfig("torch", "imagenet-split", "train", 32, split_impl=impl), factory.step_times(rng, median, 15)
        )
        for impl, median in (("grouped", 1.0), ("towers", 0.5))
    ]
    rows.append(factory.ok_row(CellConfig("torch", "imagenet-single", "train", 32), factory.step_times(rng, 2.0, 15)))
    rows.append(factory.ok_row(CellConfig("torch", "cifar100-split", "train", 32), factory.step_times(rng, 0.1, 15)))
    # Measured in one formulation only: no grouped-vs-towers line for it.
    rows.append(factory.ok_row(CellConfig("torch", "imagenet-split", "infer", 32), factory.step_times(rng, 0.3, 15)))
    towers, layouts, datasets = tables.formulation_tables(cell_summary.summarize_cells(frame_from_rows(rows)))
    assert len(towers.frame) == 1 and towers.frame.iloc[0]["mode"] == "train"
    assert towers.frame.iloc[0]["faster"] == "towers"
    assert towers.frame.iloc[0]["towers/grouped"] == pytest.approx(2, rel=0.1)
    split_line = layouts.frame[layouts.frame["dataset"] == "imagenet"].iloc[0]
    assert split_line["split/single"] == pytest.approx(4, rel=0.1)  # against the faster (towers) split
    split_data = datasets.frame[datasets.frame["layout"] == "split"].iloc[0]
    assert split_data["faster"] == "CIFAR-100"


def test_scaling_efficiency_for_gpus_and_no_claim_for_simulated_devices() -> None:
    rng = np.random.default_rng(6)
    host = factory.machine(gpus=("H100", "H100"))
    rows = [
        factory.ok_row(
            CellConfig("torch", "imagenet-single", "train", 128, gpus=1), factory.step_times(rng, 0.1, 20), host
        ),
        factory.ok_row(
            CellConfig("torch", "imagenet-single", "train", 128, gpus=2), factory.step_times(rng, 0.0625, 20), host
        ),
        factory.ok_row(CellConfig("torch", "imagenet-single", "train", 32), factory.step_times(rng, 1.0, 20), host),
        factory.ok_row(
            CellConfig("torch", "imagenet-single", "train", 32, simulate_devices=2),
            factory.step_times(rng, 0.9, 20),
            host,
        ),
    ]
    table = tables.scaling_table(cell_summary.summarize_cells(frame_from_rows(rows))).frame
    gpu = table[table["devices"] == "2 gpu"].iloc[0]
    assert gpu["speedup"] == pytest.approx(1.6, rel=0.05)
    assert gpu["efficiency"] == pytest.approx(0.8, rel=0.05)
    simulated = table[table["devices"].str.contains("simulated")].iloc[0]
    assert math.isnan(simulated["efficiency"]) and "simulated" in simulated["note"]
    assert simulated["img/s (1)"] == pytest.approx(32.0, rel=0.05)  # the CPU cell is its baseline
    assert plots.scaling_plot(table).startswith(PNG_SIGNATURE)


def test_multi_node_cells_scale_against_one_device_and_against_one_node() -> None:
    rng = np.random.default_rng(9)
    host = factory.machine(gpus=("H100",) * 8)
    cells_and_steps = [
        (CellConfig("keras", "imagenet-single", "train", 1024, gpus=1), 1.0),
        (CellConfig("keras", "imagenet-single", "train", 1024, gpus=8), 0.16),  # 6.25x on one node
        (CellConfig("keras", "imagenet-single", "train", 1024, gpus=8, nodes=2), 0.1),  # 10x on 16 GPUs
    ]
    rows = [factory.ok_row(cell, factory.step_times(rng, step, 20), host) for cell, step in cells_and_steps]
    table = tables.scaling_table(cell_summary.summarize_cells(frame_from_rows(rows))).frame
    two_nodes = table[table["devices"] == "2 nodes x 8 gpu"].iloc[0]
    assert two_nodes["efficiency"] == pytest.approx(10 / 16, rel=0.05)
    assert two_nodes["efficiency vs 1 node"] == pytest.approx(10 / 6.25 / 2, rel=0.05)
    one_node = table[table["devices"] == "8 gpu"].iloc[0]
    assert math.isnan(one_node["efficiency vs 1 node"])
    single_machine = tables.scaling_table(cell_summary.summarize_cells(frame_from_rows(rows[:2]))).frame
    assert "efficiency vs 1 node" not in single_machine  # no column for runs that never left one machine


def test_gpu_memory_columns_appear_only_with_gpu_figures() -> None:
    rng = np.random.default_rng(7)
    host = factory.machine(gpus=("H100",))
    rows = [
        factory.ok_row(
            CellConfig(fw, "imagenet-single", "train", 128, gpus=1),
            factory.step_times(rng, 0.1, 10),
            host,
            gpu_peak_mib=7000,
        )
        for fw in ("torch", "keras")
    ]
    gpu_table = tables.memory_table(cell_summary.summarize_cells(frame_from_rows(rows))).frame
    assert gpu_table.iloc[0]["Keras NVML peak MiB"] == pytest.approx(7000)
    assert gpu_table.iloc[0]["PyTorch alloc peak MiB"] == pytest.approx(3072)
    cpu_table = tables.memory_table(cell_summary.summarize_cells(frame_from_rows(factory.sweep(seed=1)))).frame
    assert "Keras NVML peak MiB" not in cpu_table and "Keras peak RSS MiB" in cpu_table


def test_energy_per_image_is_a_column_where_rows_measured_it(tmp_path: Path) -> None:
    """GPU rows with NVML energy: joules per image, the cell's energy over its timed images (repeats pooled)."""
    rng = np.random.default_rng(3)
    host = factory.machine(gpus=("H200",))
    torch_cell, keras_cell = (CellConfig(fw, "cifar100-single", "train", 128, gpus=1) for fw in ("torch", "keras"))
    rows = [  # PyTorch: two repeats, 10 and 30 steps of 128 images; Keras: one repeat, 20 steps
        factory.ok_row(torch_cell, factory.step_times(rng, 0.01, 10), host, energy_j=64.0),
        factory.ok_row(replace(torch_cell, repeat=1), factory.step_times(rng, 0.01, 30), host, energy_j=320.0),
        factory.ok_row(keras_cell, factory.step_times(rng, 0.02, 20), host, energy_j=128.0),
    ]
    summary = cell_summary.summarize_cells(frame_from_rows(rows))
    cells = tables.cells_table(summary)
    by_framework = dict(zip(cells.frame["framework"], cells.frame["energy J/img"], strict=True))
    assert by_framework["torch"] == pytest.approx((64 + 320) / (128 * 40))  # not the mean of 0.05 and 0.0833
    assert by_framework["keras"] == pytest.approx(128 / (128 * 20))
    assert any("energy J/img: joules per image" in note for note in cells.notes)
    memory = tables.memory_table(summary)
    assert memory.frame.iloc[0]["PyTorch energy J/img"] == pytest.approx(0.075)
    assert memory.frame.iloc[0]["Keras energy J/img"] == pytest.approx(0.05)
    markdown = render_markdown(build_report(load_results([factory.write_rows(tmp_path / "r.jsonl", rows)]))[0])
    shown = _table_rows(markdown, "All cells")
    assert sorted(line["energy J/img"] for line in shown) == ["0.05", "0.075"]


def test_cpu_rows_have_no_energy_column(sweep_file: Path) -> None:
    summary = cell_summary.summarize_cells(frame_from_rows(factory.sweep(seed=1)))
    cells, memory = tables.cells_table(summary), tables.memory_table(summary)
    assert not [c for c in [*cells.frame.columns, *memory.frame.columns] if "energy" in c or "J/img" in c]
    assert not any("energy" in note for note in [*cells.notes, *memory.notes])
    assert "J/img" not in render_markdown(build_report(load_results([sweep_file]))[0])


def test_flops_against_a_ceiling_only_where_measured() -> None:
    rng = np.random.default_rng(8)
    config = CellConfig("torch", "imagenet-single", "infer", 32)
    times = factory.step_times(rng, 0.32, 10)
    with_ceiling = tables.flops_table(
        cell_summary.summarize_cells(frame_from_rows([factory.ok_row(config, times, ceiling_flops_per_s=1e12)]))
    )
    line = with_ceiling.frame.iloc[0]
    assert line["of own ceiling"] == pytest.approx(line["GFLOP/s"] / 1000)
    assert line["of device ceiling"] == pytest.approx(line["GFLOP/s"] / 1000)  # the only ceiling measured
    without = tables.flops_table(cell_summary.summarize_cells(frame_from_rows([factory.ok_row(config, times)])))
    assert "of own ceiling" not in without.frame and "of device ceiling" not in without.frame
    assert any("no ceiling" in n for n in without.notes)
    assert without.frame.iloc[0]["GFLOP/s"] == pytest.approx(2.271 * 100, rel=0.05)


def test_accuracy_rows_side_by_side_tolerating_missing_figures() -> None:
    rows = [factory.accuracy_row("torch", [0.5, 0.8, 0.92]), factory.accuracy_row("keras", [0.4, 0.7, 0.85])]
    rows[1]["metrics"].pop("top5")
    summary_table, curve_table = tables.accuracy_tables(frame_from_rows(rows))
    frame = summary_table.frame
    assert list(frame["framework"]) == ["torch", "keras"]
    assert frame.iloc[0]["time to target s"] == 30.0 and math.isnan(frame.iloc[1]["time to target s"])
    assert math.isnan(frame.iloc[1]["top-5"])
    assert list(curve_table.frame["epoch"]) == [1, 2, 3]
    assert curve_table.frame["PyTorch cifar100-split top-1"].tolist() == [0.5, 0.8, 0.92]
    markdown = markdown_table(summary_table)
    assert "92.0%" in markdown
    never = tables.accuracy_tables(frame_from_rows([factory.accuracy_row("torch", [0.2, 0.4])]))[0].frame
    assert math.isnan(never.iloc[0]["time to target s"])  # kept, and missing: the target was never reached


def test_architecture_table_flags_the_paper_conv1_discrepancy() -> None:
    frame = tables.layer_shapes_table().frame.set_index("layer")
    assert frame.loc["conv1", "imagenet neurons"] == 290_400 and frame.loc["conv1", "paper neurons"] == 253_440
    assert frame.loc["conv1", "paper check"].startswith("(!)")
    assert frame.loc["conv2", "paper check"] == "ok"
    assert frame.loc["pool5", "cifar100 shape"] == "256x3x3"
    assert frame.loc["conv2", "imagenet params (split)"] * 2 == frame.loc["conv2", "imagenet params (single)"] + 256
    variants = tables.variants_table().frame.set_index("variant")
    assert variants.loc["imagenet-split", "parameters"] == 60_965_224
    assert "cannot be built" in variants.loc["tutorial-cifar100", "note"]


def test_plots_are_png_or_skipped_when_there_is_no_data() -> None:
    one_batch = cell_summary.summarize_cells(frame_from_rows(factory.sweep(seed=1)))
    assert plots.throughput_bars(one_batch).startswith(PNG_SIGNATURE)
    assert plots.throughput_vs_batch(one_batch) is None
    assert plots.memory_vs_batch(one_batch) is None
    assert plots.scaling_plot(tables.scaling_table(one_batch).frame) is None
    two_batches = cell_summary.summarize_cells(frame_from_rows(factory.sweep(seed=1, batch_sizes=(16, 64))))
    assert plots.throughput_vs_batch(two_batches).startswith(PNG_SIGNATURE)
    assert plots.memory_vs_batch(two_batches).startswith(PNG_SIGNATURE)
    assert plots.throughput_bars(pd.DataFrame()) is None


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.sources.append(values.get("src") or "")
        for name in ("src", "href"):
            if values.get(name) and not str(values[name]).startswith("data:"):
                self.external.append(f"{tag} {name}={values[name]}")


def test_write_report_writes_every_file_and_a_self_contained_html(sweep_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    files = write_report([sweep_file], out)
    for path in (files.markdown, files.html, files.csv, files.parquet):
        assert path is not None and path.is_file() and path.stat().st_size > 0
    assert files.plots == [out / "throughput.png"]
    assert any("throughput_vs_batch" in n for n in files.notes)
    csv = pd.read_csv(files.csv)
    assert len(csv) == 9 and csv["images_per_s"].isna().sum() == 1
    assert json.loads(csv["step_times_s"].dropna().iloc[0])[0] > 0
    assert len(pd.read_parquet(files.parquet)) == 9

    parser = _Images()
    parser.feed(files.html.read_text())
    parser.close()
    assert parser.external == []
    assert len(parser.sources) == len(files.plots) >= 1
    for source in parser.sources:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix) and len(source) > len(prefix)
        assert base64.b64decode(source[len(prefix) :], validate=True).startswith(PNG_SIGNATURE)
    markdown = files.markdown.read_text()
    assert markdown.index("## Environment") < markdown.index("## Throughput")
    assert "![Throughput per variant and framework](throughput.png)" in markdown
    assert "Plot skipped: Throughput vs batch size" in markdown and "Plot skipped" in files.html.read_text()


def test_parquet_is_skipped_with_a_note_without_an_engine(
    sweep_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build.importlib.util, "find_spec", lambda name: None)
    files = write_report([sweep_file], tmp_path / "out")
    assert files.parquet is None and not (tmp_path / "out" / "results.parquet").exists()
    assert any("parquet" in note for note in files.notes)


def test_pytest_benchmark_json_loads_into_the_same_shape(tmp_path: Path) -> None:
    path = factory.pytest_benchmark_file(tmp_path / "bench.json")
    frame = load_results([path]).frame
    document = json.loads(path.read_text())
    assert list(frame["framework"]) == ["torch", "keras"]
    assert set(frame["source_kind"]) == {"pytest-benchmark"}
    for line, bench in zip(frame.itertuples(), document["benchmarks"], strict=True):
        assert line.images_per_s == pytest.approx(32 / bench["stats"]["median"])
        assert line.variant == "cifar100-split" and line.mode == "infer" and line.batch_size == 32
    assert frame.iloc[0]["machine_id"] == machine_id(factory.machine())
    table = tables.framework_table(cell_summary.summarize_cells(frame)).frame
    assert table.iloc[0]["faster"] == "Keras"


def test_bench_run_summary_still_renders_failed_cells(sweep_file: Path) -> None:
    rows = [json.loads(line) for line in sweep_file.read_text().splitlines()]
    frame = rows_to_frame(rows)
    assert len(frame) == 9 and frame["images_per_s"].isna().sum() == 1
    console = Console(file=io.StringIO(), width=200)
    render_throughput(frame, console)
    text = console.file.getvalue()
    assert "oom" in text and "imagenet-single" in text
    assert "run-to-run spread: not measured (one process per cell)" in text  # said, not hidden


def test_a_file_given_twice_or_through_a_link_is_read_once(tmp_path: Path, sweep_file: Path) -> None:
    once = load_results([sweep_file])
    link = tmp_path / "link.jsonl"
    link.symlink_to(sweep_file)
    for paths in ([sweep_file, sweep_file], [sweep_file, link]):
        twice = load_results(paths)
        assert len(twice.frame) == len(once.frame)  # repeats are not doubled, the spread not narrowed
        assert any(f"{paths[1]} is the same file as {sweep_file}: read once" in w for w in twice.warnings)


def test_a_reused_report_folder_keeps_no_plot_of_an_earlier_report(tmp_path: Path, sweep_file: Path) -> None:
    from reports.build import write_report

    out = tmp_path / "report"
    out.mkdir()
    (out / "scaling.png").write_bytes(b"an earlier report's plot")
    files = write_report([sweep_file], out)
    assert any(note.startswith("plot scaling.png skipped") for note in files.notes)
    assert not (out / "scaling.png").exists()
