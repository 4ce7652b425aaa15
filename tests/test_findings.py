"""Findings: built from fixture rows (the runner's own row layout), one machine and several."""

from __future__ import annotations

import re

import numpy as np
import pytest
import results_factory as factory

from benchmarks.cell import CellConfig
from implementations.spec import forward_flops
from implementations.variants import get_variant
from reports.build import write_report
from reports.cell_summary import summarize_cells
from reports.findings import build_findings
from reports.load import frame_from_rows, framework_summary, load_results
from reports.tables import framework_table

NUMBER = r"([0-9.]+)"
INTERVAL = rf"\[{NUMBER}–{NUMBER}\]"


def _line(findings: list[str], start: str) -> str:
    matches = [line for line in findings if line.startswith(start)]
    assert len(matches) == 1, (start, findings)
    return matches[0]


def test_faster_framework_per_mode_with_its_interval():
    findings = build_findings(frame_from_rows(factory.sweep(seed=1)))
    infer = _line(findings, "infer:")
    # Fixture rates: Keras 185 vs 97 (single) and 247 vs 92 (split) images/s; train 31 vs 31 and 54 vs 35.
    assert "Keras faster in 2, PyTorch in 0 of 2 cells" in infer
    found = re.search(rf"imagenet-split b32 cpu: Keras {NUMBER}x PyTorch {INTERVAL}", infer)
    ratio, low, high = map(float, found.groups())
    assert ratio == pytest.approx(247 / 92, rel=0.05)
    assert low < ratio < high and high - low < 0.2 * ratio
    assert "(Keras towers, PyTorch grouped)" in infer  # every figure names its configuration
    train = _line(findings, "train:")
    assert "Keras faster in 1, PyTorch in 0 of 2 cells" in train
    assert re.search(r"imagenet-single b32 cpu: no clear winner", train)


def test_split_gain_over_single_per_framework():
    findings = build_findings(frame_from_rows(factory.sweep(seed=2)))
    keras = _line(findings, "split vs single, Keras:")
    ratio, low, high = map(float, re.search(rf"imagenet infer b32 cpu: {NUMBER}x {INTERVAL} faster", keras).groups())
    assert ratio == pytest.approx(247 / 185, rel=0.05) and low < ratio < high
    torch = _line(findings, "split vs single, PyTorch:")
    assert re.search(rf"imagenet train b32 cpu: {NUMBER}x {INTERVAL} faster \(grouped vs fp32\)", torch)


def test_best_fast_path_is_named_in_findings_and_in_the_framework_table():
    rng = np.random.default_rng(3)
    rows = factory.sweep(seed=3, variants=("imagenet-single",), modes=("infer",))
    compiled = CellConfig("torch", "imagenet-single", "infer", 32, compiled=True, steps=30)
    rows.append(factory.ok_row(compiled, factory.step_times(rng, 32 / (2 * 97.0))))
    frame = frame_from_rows(rows)
    line = _line(build_findings(frame), "best fast path, PyTorch:")
    assert "compiled fastest in 1 of 1 cells" in line
    ratio, low, high = map(float, re.search(rf"largest gain {NUMBER}x baseline {INTERVAL}", line).groups())
    assert ratio == pytest.approx(2.0, rel=0.05) and low < ratio < high
    table = framework_table(summarize_cells(frame)).frame
    assert table.loc[0, "PyTorch config"] == "compiled"  # not "—": the 194 img/s was torch.compile
    assert table.loc[0, "Keras config"] == "fp32"


def test_fraction_of_the_device_ceiling_is_the_best_matmul_on_the_machine():
    rng = np.random.default_rng(4)
    times = {fw: factory.step_times(rng, 32 / rate) for fw, rate in (("torch", 97.0), ("keras", 185.0))}
    ceilings = {"torch": 200e9, "keras": 400e9}  # Keras' matmul sets the device's ceiling for both
    rows = [
        factory.ok_row(CellConfig(fw, "imagenet-single", "infer", 32), t, ceiling_flops_per_s=ceilings[fw])
        for fw, t in times.items()
    ]
    findings = build_findings(frame_from_rows(rows))
    flops = forward_flops(get_variant("imagenet-single"))
    for name, fw in (("PyTorch", "torch"), ("Keras", "keras")):
        expected = flops * 32 / np.median(times[fw]) / 400e9
        line = _line(findings, f"{name} reached at most")
        assert f"at most {expected:.1%} of the CPU ceiling" in line
        assert "ceiling 400 GFLOP/s fp32" in line and "with fp32 on imagenet-single infer b32 cpu" in line
        low, high = (float(x) / 100 for x in re.search(r"IQR ([0-9.]+)%–([0-9.]+)%", line).groups())
        assert low <= expected <= high


def test_failures_one_line_each_with_status_and_error():
    rows = factory.sweep(seed=5, variants=("imagenet-single",))
    rows.append(factory.failed_row(CellConfig("keras", "imagenet-split", "train", 256, split_impl="towers")))
    rows.append(factory.failed_row(CellConfig("torch", "cifar100-split", "infer", 8), status="timeout"))
    failed = [line for line in build_findings(frame_from_rows(rows)) if line.startswith("failed:")]
    assert failed == [
        "failed: Keras imagenet-split train b256 cpu (towers): oom: RuntimeError: CUDA out of memory",
        "failed: PyTorch cifar100-split infer b8 cpu (grouped): timeout: RuntimeError: CUDA out of memory",
    ]


def test_rows_from_two_machines_are_reported_apart_never_pooled():
    other = factory.machine("bench-b", cpu="Intel Xeon 8481C")
    rows = factory.sweep(seed=6, modes=("infer",)) + factory.sweep(seed=7, modes=("infer",), host=other, slowdown=2)
    findings = build_findings(frame_from_rows(rows))
    assert findings[0].startswith("Results from 2 machines (bench-a, bench-b)") and "not pooled" in findings[0]
    assert all(line.startswith(("[bench-a] ", "[bench-b] ")) for line in findings[1:])
    infer = [line for line in findings if "infer: Keras faster" in line]
    assert [line.split("]")[0] for line in infer] == ["[bench-a", "[bench-b"]
    # Both machines ran Keras and PyTorch alike (bench-b twice as slow): each machine's own ratio is ~2.68.
    for line in infer:
        ratio = float(re.search(rf"imagenet-split b32 cpu: Keras {NUMBER}x", line).group(1))
        assert ratio == pytest.approx(247 / 92, rel=0.05)


def test_reports_open_with_the_findings(tmp_path):
    path = factory.write_rows(tmp_path / "r.jsonl", factory.sweep(seed=8, variants=("imagenet-split",)))
    files = write_report([path], tmp_path / "report")
    markdown, page = files.markdown.read_text(), files.html.read_text()
    assert markdown.index("## Findings") < markdown.index("## Environment") < markdown.index("## Throughput")
    assert page.index("<h2>Findings</h2>") < page.index("<h2>Environment</h2>")
    first = build_findings(load_results([path]).frame)[0]
    assert f"- {first}" in markdown and first.replace("'", "&#x27;") in page


def test_environment_block_says_built_with_cuda_when_no_gpu_was_used():
    tensorflow = {"framework": "keras", "tensorflow": "2.21.0", "cuda": "12.5.1", "cudnn": "9"}
    on_cpu, on_gpu = framework_summary(tensorflow, gpu_used=False), framework_summary(tensorflow, gpu_used=True)
    assert "built with CUDA 12.5.1, built with cuDNN 9" in on_cpu and "cuda 12.5.1" not in on_cpu
    assert "cuda 12.5.1, cudnn 9" in on_gpu


@pytest.mark.parametrize("others", [0.0, 0.1, 1.0], ids=["quiet", "a-little", "one-other-core"])
def test_a_busy_machine_is_the_first_finding(others):
    rows = factory.sweep(seed=6, variants=("cifar100-single",))
    for row in rows[:2]:
        row["metrics"]["machine_load"] = {
            "measured": True,
            "other_processes_cores": others,
            "steal_cores": 0.0,
            "processes_in_cell": 1,
        }
    findings = build_findings(frame_from_rows(rows))
    busy = others > 0.25
    assert findings[0].startswith("WARNING: the machine was busy during 2 of 4 cells") is busy
    assert (f"up to {others:.2f} cores" in findings[0]) is busy


def test_compare_warns_of_the_side_measured_on_a_busy_machine(tmp_path):
    from reports.compare import compare

    base = factory.sweep(seed=7, variants=("cifar100-single",))
    new = factory.sweep(seed=8, variants=("cifar100-single",))
    for row in new:
        row["metrics"]["machine_load"] = {"measured": True, "other_processes_cores": 1.0, "steal_cores": 0.0,
                                          "processes_in_cell": 1}  # fmt: skip
    result = compare(
        [factory.write_rows(tmp_path / "base.jsonl", base)], [factory.write_rows(tmp_path / "new.jsonl", new)]
    )
    busy = [line for line in result.warnings if "busy" in line]
    assert len(busy) == 1 and busy[0].startswith("new: the machine was busy during 4 of 4 cells")
