"""Data-parallel ranks stop timing at the same step, whatever each rank's own clock says.

Timing by budget stops when the median is precise enough or the budget is spent. Each rank of a
data-parallel cell judges that from its own step times; if the ranks stopped on their own, one would
leave the timed loop while another still waits in the gradient all-reduce of its next step, and the
cell would hang into a collective's timeout. So the ranks share one decision at every step.

The two-rank checks run the suite's own worker (``benchmarks.worker.measure``) in fresh processes:
this file as a script, under torchrun for PyTorch (two gloo ranks on the CPU) and as the two nodes of
a multi-node Keras cell on 127.0.0.1 (TensorFlow's MultiWorkerMirroredStrategy, one worker each).
Each rank's median precision is forced to disagree: rank 0's is precise at once, rank 1's only two
steps later, so rank 0 wants to stop at the minimum count and rank 1 two steps after it (the budget
is never reached, whatever the machine's speed). Each rank writes its timing record as JSON; the
tests compare them. Before the ranks agreed, rank 0 left while rank 1 waited in its gradient
all-reduce, which failed when rank 0's process ended (or would have waited into a timeout).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script, this file's folder comes first on the path, not the project
    sys.path.insert(0, str(ROOT))

from benchmarks.cell import CellConfig  # noqa: E402

pytestmark = pytest.mark.e2e  # starts the suite's commands or workers end to end: out of the quick loop

MIN_STEPS, LATER = 2, 2  # rank 0 wants to stop after MIN_STEPS steps, rank 1 LATER steps after it
BUDGET_S = 600.0  # never what stops the ranks
GRAD_STRIDES_WARNING = "Grad strides do not match bucket view strides"


def environment() -> dict[str, str]:
    """The tests' environment for the ranks: one thread each (two ranks share the machine), no GPU."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def read_records(folder: Path, ranks: int = 2) -> list[dict | None]:
    """Each rank's timing record, None for a rank that wrote none (it failed)."""
    files = [folder / f"rank{rank}.json" for rank in range(ranks)]
    return [json.loads(f.read_text()) if f.exists() else None for f in files]


def force_precision(timing: object, rank: int) -> None:
    """Rank 0's median precise at once, rank 1's only ``LATER`` steps after the minimum: the ranks want to stop
    at different steps."""
    precise_from = MIN_STEPS if rank == 0 else MIN_STEPS + LATER
    timing.median_precision = lambda times, level=0.95: 0.0 if len(times) >= precise_from else math.inf


def assert_stopped_together(first: dict, other: dict) -> None:
    assert first["steps_taken"] == other["steps_taken"] == MIN_STEPS + LATER  # rank 0 waited for rank 1
    assert first["stopped_by"] == other["stopped_by"] == "target precision"
    assert first["stop_agreed_across_ranks"] == other["stop_agreed_across_ranks"] == 2


# --- PyTorch: two DDP ranks under torchrun ---------------------------------------------------


@pytest.fixture(scope="module")
def torch_ranks(tmp_path_factory) -> tuple[int, str, list[dict | None]]:
    """(torchrun's exit code, its output, each rank's record) of a two-rank channels_last training cell."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("torch_ranks")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += [__file__, "torch-rank", str(out)]
    try:
        done = subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"the two ranks hung: {expired}")
    return done.returncode, done.stdout + done.stderr, read_records(out)


def test_torch_ranks_that_want_to_stop_at_different_steps_stop_at_the_same_step(torch_ranks):
    code, output, (first, other) = torch_ranks
    assert code == 0 and first and other, output[-4000:]
    assert_stopped_together(first, other)


def test_a_channels_last_torch_ddp_cell_builds_its_buckets_with_the_parameters_strides(torch_ranks):
    """DDP lays out its gradient buckets when it is built: wrapping before channels_last mismatches them."""
    _, output, _ = torch_ranks
    assert GRAD_STRIDES_WARNING not in output


def torch_rank(out: Path) -> None:
    """One rank of a two-rank data-parallel cell, its precision forced (see the module's docstring)."""
    from benchmarks import worker
    from benchmarks.frameworks import pytorch_cell
    from benchmarks.measure import timing

    rank = int(os.environ["RANK"])
    force_precision(timing, rank)
    pytorch_cell.measure_ceiling = lambda *args: {}  # the reporter's large matmul: not what this checks
    config = CellConfig(
        "torch", "cifar100-single", "train", 2, simulate_devices=2, steps=MIN_STEPS, warmup=1,
        time_budget_s=BUDGET_S, target_precision=0.05, channels_last=True,
    )  # fmt: skip
    figures, _ = worker.measure(config)
    (out / f"rank{rank}.json").write_text(json.dumps(figures["timing_budget"]))


# --- Keras: two nodes, one TensorFlow worker each, under MultiWorkerMirroredStrategy ----------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_two_nodes(port: int, out: Path, timeout_s: float) -> list[dict]:
    """Two Keras nodes of one cell as two processes at once (``keras_node``); their records, both required."""
    pytest.importorskip("tensorflow")
    nodes = [
        subprocess.Popen(
            [sys.executable, __file__, "keras-node", str(out), str(rank), str(port)],
            cwd=ROOT,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    deadline = time.monotonic() + timeout_s
    outputs = [finish(node, deadline) for node in nodes]
    records = read_records(out)
    assert all(records), "\n".join(o[-3000:] for o in outputs)
    return records


def finish(process: subprocess.Popen, deadline: float) -> str:
    """The process's output once it ends; killed (and the test failed) at the deadline."""
    try:
        return process.communicate(timeout=max(deadline - time.monotonic(), 1))[0]
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("a Keras node hung")


def test_two_keras_nodes_that_want_to_stop_at_different_steps_stop_at_the_same_step(tmp_path):
    assert_stopped_together(*run_two_nodes(free_port(), tmp_path, timeout_s=300))


def keras_node(out: Path, rank: int, port: str) -> None:
    """One of the two nodes of a multi-node Keras cell on this machine, its precision forced."""
    from benchmarks import worker
    from benchmarks.frameworks import keras_tf_cell
    from benchmarks.measure import timing

    force_precision(timing, rank)
    keras_tf_cell.measure_ceiling = lambda *args: {}
    config = CellConfig(
        "keras", "cifar100-single", "train", 2, steps=MIN_STEPS, warmup=1, time_budget_s=BUDGET_S,
        target_precision=0.05, nodes=2, node_rank=rank, rendezvous=f"127.0.0.1:{port}", rdzv_id="agree",
        join_timeout_s=20,
    )  # fmt: skip
    figures, _ = worker.measure(config)
    (out / f"rank{rank}.json").write_text(json.dumps(figures["timing_budget"]))


if __name__ == "__main__":
    mode, folder = sys.argv[1], Path(sys.argv[2])
    if mode == "torch-rank":
        torch_rank(folder)
    elif mode == "keras-node":
        keras_node(folder, int(sys.argv[3]), sys.argv[4])
