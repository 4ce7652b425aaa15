"""``--cuda-graphs``: PyTorch's step captured once as a CUDA graph and replayed, checked on a CPU.

The refusals (a CPU cell, several devices, Keras, with ``--compile``) and ``--best``'s choice are
plain planning; the capture's order of events runs against a fake ``torch.cuda``; the cell's wiring
(static tensors fed each step) runs on the CPU with the capture replaced by an eager step.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from benchmarks.cell import CellConfig
from benchmarks.fast_paths import candidates
from benchmarks.matrix import SweepError, SweepOptions, plan

ROOT = Path(__file__).resolve().parent.parent
CIFAR = "cifar100-single"


# --- refused up front where it cannot apply -------------------------------------------------------


def test_a_cpu_sweep_is_refused_in_one_line_with_exit_two(tmp_path):
    args = ["run", "-f", "torch", "--quick", "--gpus", "0", "--cuda-graphs", "--no-report"]
    result = subprocess.run(
        [sys.executable, "bench.py", *args, "--results", str(tmp_path / "r.jsonl")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--cuda-graphs captures a step's GPU work and needs a GPU" in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "r.jsonl").exists() or not (tmp_path / "r.jsonl").read_text().strip()


@pytest.mark.parametrize(
    "options,message",
    [
        ({"frameworks": ["torch"]}, "needs a GPU"),
        ({"frameworks": ["torch"], "gpus": 1, "simulate_devices": 2}, "runs on one GPU in this suite"),
        ({"frameworks": ["torch"], "gpus": 2, "variants": [CIFAR]}, "runs on one GPU in this suite"),
        ({"frameworks": ["torch"], "gpus": 1, "compiled": True}, "drop one of them"),
        ({"frameworks": ["keras"], "gpus": 1}, "keras does not take --cuda-graphs"),
    ],
)
def test_the_option_is_refused_where_it_cannot_apply(options, message):
    with pytest.raises(SweepError, match=message):
        plan(SweepOptions(quick=True, cuda_graphs=True, **options))


def test_best_tries_cuda_graphs_only_for_one_pytorch_gpu():
    def graphed(cell: CellConfig) -> list[CellConfig]:
        return [c for c in candidates(cell, native_bf16=True) if c.cuda_graphs]

    one_gpu = graphed(CellConfig("torch", CIFAR, "train", 128, gpus=1, math_mode="tf32"))
    assert len(one_gpu) == 1 and one_gpu[0].fast_paths() == "TF32+cuda-graphs"
    assert not one_gpu[0].compiled and one_gpu[0].precision == "fp32"  # one thing changed
    for elsewhere in (
        CellConfig("torch", CIFAR, "train", 16),
        CellConfig("torch", CIFAR, "train", 128, gpus=2),
        CellConfig("torch", CIFAR, "train", 128, gpus=1, simulate_devices=2),
        CellConfig("torch", CIFAR, "train", 128, gpus=1, compiled=True),
        CellConfig("keras", CIFAR, "train", 128, gpus=1),
    ):
        assert not graphed(elsewhere), elsewhere.label()
    best = plan(SweepOptions(frameworks=["torch"], variants=[CIFAR], gpus=1, repeats=1, best=True))
    assert sum(c.cuda_graphs for c in best) == 2  # train and infer
    assert not any(c.cuda_graphs for c in plan(SweepOptions(frameworks=["torch"], variants=[CIFAR], best=True)))


# --- recorded in every row -------------------------------------------------------------------------


def test_every_row_records_it_and_only_a_graphed_cell_changes_its_key():
    from benchmarks.results import ResultRow
    from reports.summary import rows_to_frame

    plain = CellConfig("torch", CIFAR, "train", 128, gpus=1, math_mode="tf32")
    graphed = CellConfig("torch", CIFAR, "train", 128, gpus=1, math_mode="tf32", cuda_graphs=True)
    assert plain.row_fields()["cell"]["cuda_graphs"] is False
    assert graphed.row_fields()["cell"]["cuda_graphs"] is True
    assert "cuda_graphs" not in plain.key() and plain.key() != graphed.key()
    assert "[TF32+cuda-graphs]" in graphed.label()
    rows = [
        ResultRow.from_result(cell, {"status": "ok", "metrics": {"images_per_s": 100.0}}, {}, "run", 0.0)
        for cell in (plain, graphed)
    ]
    assert list(rows_to_frame(rows)["fast_path"]) == ["TF32", "TF32+cuda-graphs"]
    assert CellConfig.from_dict(rows[1].cell) == graphed


# --- the capture, against a fake torch.cuda --------------------------------------------------------


class FakeCuda:
    """The pieces of ``torch.cuda`` a capture uses, recording what happens in which order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.current = "main"
        cuda = self

        class Stream:
            def __init__(self) -> None:
                self.name = "side"

            def wait_stream(self, other) -> None:
                cuda.events.append(f"{self.name} waits for {other.name}")

        class Main(Stream):
            def __init__(self) -> None:
                self.name = "main"

        class CUDAGraph:
            def replay(self) -> None:
                cuda.events.append("replay")

        self.Stream, self.CUDAGraph, self._main = Stream, CUDAGraph, Main()

    def current_stream(self):
        return self._main

    @contextmanager
    def stream(self, stream):
        self.current, before = stream.name, self.current
        yield
        self.current = before

    @contextmanager
    def graph(self, graph):
        self.events.append("capture begins")
        self.current, before = "capture", self.current
        yield
        self.current = before
        self.events.append("capture ends")


def test_the_first_call_warms_up_on_a_side_stream_captures_once_then_replays():
    from benchmarks.frameworks.pytorch_cell import graphed_step

    cuda = FakeCuda()
    step = graphed_step(
        step=lambda: cuda.events.append(f"step on {cuda.current}"),
        feed=lambda: cuda.events.append("feed"),
        cuda=cuda,
        warmup=2,
    )
    assert cuda.events == []  # nothing runs while the cell is prepared: the capture is the first step's time
    step()
    assert cuda.events == [
        "side waits for main",  # the side stream starts after the work queued so far
        "step on side",
        "step on side",
        "main waits for side",  # and the main stream after the warm-up
        "capture begins",
        "step on capture",
        "capture ends",
        "feed",
        "replay",
    ]
    cuda.events.clear()
    step()
    step()
    assert cuda.events == ["feed", "replay", "feed", "replay"]  # the step itself never runs again


@pytest.mark.parametrize("mode", ["train", "infer"])
def test_a_graphed_cell_feeds_static_tensors_that_its_step_reads(mode, monkeypatch):
    """The cell's wiring on the CPU: the capture is replaced by running the step after each feed."""
    import torch

    from benchmarks.frameworks import pytorch_cell

    captured = {}

    def eager_graph(step, feed, cuda):
        captured["cuda"] = cuda

        def replay():
            feed()
            step()
            captured["steps"] = captured.get("steps", 0) + 1

        return replay

    monkeypatch.setattr(pytorch_cell, "graphed_step", eager_graph)
    seen: list = []  # the tensor each forward pass reads
    build = pytorch_cell.build_torch_model

    def recording_model(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
        return model

    monkeypatch.setattr(pytorch_cell, "build_torch_model", recording_model)
    cell = pytorch_cell.prepare_torch(CellConfig("torch", CIFAR, mode, 4, cuda_graphs=True))
    assert captured["cuda"] is torch.cuda
    cell.step()
    static = seen[0]
    static.fill_(float("nan"))  # what a graph would read if nothing fed it
    cell.step()
    assert captured["steps"] == 2
    assert seen[1] is static  # the graph's tensor, the same every step
    assert torch.isfinite(static).all()  # the batch was copied into it before the step
