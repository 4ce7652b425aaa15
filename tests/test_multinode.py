"""Several machines, one cell: options from the command line or SLURM, torchrun's rendezvous, and failures.

The two-node tests run two ``bench.py run`` processes on 127.0.0.1 (gloo on the CPU, one process
each), as two machines would; every process is bounded in time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import runner
from benchmarks.cell import CellConfig
from benchmarks.multinode import (
    MultiNodeError,
    NodeSetup,
    check_port_free,
    check_same_cell,
    expand_nodelist,
    is_reporter,
    node_setup,
)
from benchmarks.results import read_results

pytestmark = pytest.mark.e2e  # starts the suite's commands or workers end to end: out of the quick loop

ROOT = Path(__file__).resolve().parent.parent
CELL = ["-f", "torch", "-v", "cifar100-single", "-m", "train", "-b", "4", "--warmup", "1"]
CELL += ["--repeats", "1", "--time-budget", "0", "--no-report"]
MULTI_NODE_FRAMEWORKS = ["torch", "keras"]  # torchrun's c10d rendezvous; TensorFlow's multi-worker runtime


def cell_options(framework: str) -> list[str]:
    return [*CELL[:1], framework, *CELL[2:]]


@pytest.mark.parametrize(
    "text,hosts",
    [
        ("node[01-04]", ["node01", "node02", "node03", "node04"]),
        ("a,b", ["a", "b"]),
        ("gpu[1,3-4],cpu7", ["gpu1", "gpu3", "gpu4", "cpu7"]),
        ("solo", ["solo"]),
    ],
)
def test_slurm_node_lists_expand(text, hosts):
    assert expand_nodelist(text) == hosts


def test_under_slurm_the_options_come_from_the_environment():
    env = {"SLURM_NNODES": "4", "SLURM_PROCID": "2", "SLURM_JOB_NODELIST": "gpu[07-10]", "SLURM_JOB_ID": "881"}
    setup = node_setup(env)
    assert (setup.nodes, setup.node_rank, setup.endpoint, setup.rdzv_id) == (4, 2, "gpu07:29500", "slurm-881")
    given = node_setup(env, rendezvous="10.0.0.1:1234", node_rank=0)  # options win over the environment
    assert (given.endpoint, given.node_rank) == ("10.0.0.1:1234", 0)
    assert node_setup({}) == NodeSetup()  # no SLURM, no --nodes: one machine


def test_a_huge_slurm_node_list_is_not_expanded_to_find_its_first_host():
    env = {"SLURM_NNODES": "2", "SLURM_PROCID": "1", "SLURM_JOB_NODELIST": "node[1-999999999]", "SLURM_JOB_ID": "5"}
    started = time.perf_counter()
    assert node_setup(env).endpoint == "node1:29500"
    assert time.perf_counter() - started < 5  # expanding it in full took 22 s, then MemoryError


@pytest.mark.parametrize(
    "env,message",
    [
        ({"SLURM_NNODES": "two", "SLURM_JOB_NODELIST": "a,b"}, "SLURM_NNODES must be a whole number, got 'two'"),
        ({"SLURM_NNODES": "2", "SLURM_PROCID": "x", "SLURM_JOB_NODELIST": "a,b"}, "SLURM_PROCID must be a whole"),
        ({"SLURM_NNODES": "2", "SLURM_PROCID": "0", "SLURM_JOB_NODELIST": ""}, "SLURM_JOB_NODELIST is empty"),
        ({"SLURM_NNODES": "2", "SLURM_PROCID": "0", "SLURM_JOB_NODELIST": "n[a-b]"}, "cannot read the SLURM node"),
    ],
)
def test_a_bad_slurm_environment_is_one_line(env, message):
    with pytest.raises(MultiNodeError, match=message):
        node_setup(env)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"nodes": 2, "rendezvous": "h:1"}, "--node-rank"),
        ({"nodes": 2, "node_rank": 0}, "--rendezvous HOST:PORT"),
        ({"nodes": 2, "node_rank": 2, "rendezvous": "h:1"}, "from 0 to 1"),
        ({"nodes": 2, "node_rank": 0, "rendezvous": "h"}, "HOST:PORT"),
        ({"nodes": 2, "node_rank": 0, "rendezvous": "h:70000"}, "HOST:PORT"),
        ({"nodes": 0}, "at least 1"),
        ({"rendezvous": "h:1"}, "for --nodes 2 or more"),
    ],
)
def test_wrong_multi_node_options_are_one_line(kwargs, message):
    with pytest.raises(MultiNodeError, match=message):
        node_setup({}, **kwargs)


def test_placement_is_not_part_of_the_key_so_every_node_compares_the_same_key():
    cell = CellConfig("torch", "cifar100-single", "train", 4, nodes=2)
    first = NodeSetup(2, 0, "127.0.0.1", 5000).place([cell, cell])
    other = NodeSetup(2, 1, "127.0.0.1", 5000).place([cell, cell])
    assert [c.key() for c in first] == [c.key() for c in other] == [cell.key()] * 2
    assert [c.rdzv_id for c in first] == [c.rdzv_id for c in other] and first[0].rdzv_id != first[1].rdzv_id
    assert cell.key() != CellConfig("torch", "cifar100-single", "train", 4).key()  # 2 nodes: another benchmark
    assert (cell.devices, cell.parallel, cell.device_setup) == (2, "data", "2 nodes x cpu")
    with pytest.raises(MultiNodeError, match="nodes disagree"):
        check_same_cell([cell.key(), CellConfig("torch", "cifar100-single", "train", 8, nodes=2).key()], cell)


def test_torchrun_meets_at_the_first_node_with_a_c10d_rendezvous():
    (cell,) = NodeSetup(2, 1, "10.1.2.3", 29400, "job7", join_timeout_s=40).place(
        [CellConfig("torch", "cifar100-single", "train", 8, gpus=4, nodes=2)]
    )
    command = runner.worker_command(cell)
    assert command[1:3] == ["-m", "torch.distributed.run"]
    flags = dict(zip(command[3:-4:2], command[4:-4:2], strict=True))
    assert flags == {
        "--nnodes": "2",
        "--nproc-per-node": "4",
        "--rdzv-backend": "c10d",
        "--rdzv-endpoint": "10.1.2.3:29400",
        "--rdzv-id": "job7-0",
        "--rdzv-conf": "join_timeout=40,read_timeout=40,is_host=0",
        "--max-restarts": "0",
    }
    assert command[-4:-1] == ["-m", "benchmarks.worker", "--config"]


def test_only_local_rank_zero_of_the_first_node_reports():
    cell = CellConfig("torch", "cifar100-single", "train", 8, nodes=2)
    first, other = (NodeSetup(2, rank, "h", 1).place([cell])[0] for rank in (0, 1))
    assert is_reporter(first, {"RANK": "1", "LOCAL_RANK": "0"})  # the rendezvous may number node 0 second
    assert not is_reporter(first, {"RANK": "0", "LOCAL_RANK": "1"})
    assert not is_reporter(other, {"RANK": "0", "LOCAL_RANK": "0"})


def test_a_port_in_use_is_one_clear_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MultiNodeError, match=f"port {port} on 127.0.0.1 is in use"):
            check_port_free(NodeSetup(2, 0, "127.0.0.1", port))
        check_port_free(NodeSetup(2, 1, "127.0.0.1", port))  # other nodes only connect to it
        result = bench(*CELL, "--steps", "1", *node_options(2, 0, port), "--results", os.devnull, timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_options(nodes: int, rank: int, port: int, join_timeout: float = 60) -> list[str]:
    return ["--nodes", str(nodes), "--node-rank", str(rank), "--rendezvous", f"127.0.0.1:{port}",
            "--join-timeout", str(join_timeout)]  # fmt: skip


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}  # two "machines" share this one's cores


def bench(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "bench.py", "run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(),
    )


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "bench.py", "run", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )


def finish(process: subprocess.Popen, timeout: float) -> tuple[int, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return process.returncode, out + err


# Two nodes that agree, each giving one row of world size two: the README's two-node and SLURM commands, run for
# both frameworks by tests/test_readme_commands.py (two-nodes, slurm).


@pytest.mark.parametrize("framework", MULTI_NODE_FRAMEWORKS)
def test_nodes_started_with_different_options_are_refused_at_the_rendezvous(tmp_path, framework):
    port = free_port()
    results = tmp_path / "r.jsonl"
    options = [*cell_options(framework), "--steps", "1"]
    first = start(*options, *node_options(2, 0, port), "--results", str(results))
    other = start(*options, "--seed", "7", *node_options(2, 1, port), "--results", os.devnull)
    (code0, out0), (code1, _) = finish(first, 240), finish(other, 240)
    assert code0 == 1 and code1 == 1, out0  # the other node's part did not finish either, and it says so
    (row,) = read_results(results).rows
    assert row.status == "failed" and "nodes disagree on the cell" in row.error, row.error


def test_a_torch_node_alone_gives_up_after_join_timeout_in_one_line(tmp_path):
    started = time.monotonic()
    done = bench(*cell_options("torch"), *node_options(2, 1, free_port(), join_timeout=5), timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert "could not reach the rendezvous store" in " ".join(done.stdout.split()) and "within 5 s" in done.stdout
    assert took < 60  # it waited 145 s, per try of torch's own 60 s store timeout


# Seconds a node's worker runs before it trains with the other node: torchrun starts it after the
# rendezvous; a Keras worker first imports TensorFlow, swaps addresses and builds the replicas.
SETTLE_S = {"torch": 8, "keras": 25}


@pytest.mark.parametrize("framework", MULTI_NODE_FRAMEWORKS)
def test_a_node_killed_mid_cell_is_a_timeout_row_and_nothing_hangs(tmp_path, framework):
    port = free_port()
    results = tmp_path / "r.jsonl"
    # Enough steps that the kill lands while the two nodes train together.
    options = [*cell_options(framework), "--steps", "400", "--cell-timeout", "150"]
    first = start(*options, *node_options(2, 0, port, join_timeout=40), "--results", str(results))
    other = start(*options, *node_options(2, 1, port, join_timeout=40), "--results", os.devnull)
    started = time.monotonic()
    try:
        wait_for_training(other.pid, deadline=started + 150, settle_s=SETTLE_S[framework])
        other.send_signal(signal.SIGTERM)  # the node's bench.py takes its torchrun and worker down with it
        code0, out0 = finish(first, 200)
    finally:
        for process in (first, other):
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert code0 == 1, out0
    (row,) = read_results(results).rows
    assert row.status == "timeout", (row.status, row.error)
    assert row.wall_s < 150, row.error  # within the join timeout of the collectives, not the cell timeout
    assert time.monotonic() - started < 200


def wait_for_training(pid: int, deadline: float, settle_s: float) -> None:
    """Until a worker below ``pid`` has been up ``settle_s`` seconds, long enough to be training."""
    seen = None
    while time.monotonic() < deadline:
        commands = descendants(pid)
        if any("benchmarks.worker" in c and "torch.distributed.run" not in c for c in commands):
            seen = seen or time.monotonic()
            if time.monotonic() - seen > settle_s:
                return
        time.sleep(0.5)
    raise AssertionError("the second node's worker never started")


def descendants(pid: int) -> list[str]:
    """Command lines of the processes below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(commands.get(child, ""))
            todo.append(child)
    return found


def test_a_multi_node_plan_takes_single_tower_variants_and_multi_node_frameworks():
    from benchmarks import frameworks
    from benchmarks.matrix import SweepError, SweepOptions, plan

    cells = plan(SweepOptions(nodes=2, quick=True))
    assert cells and all(c.nodes == 2 and c.parallel == "data" for c in cells)
    assert {c.framework for c in cells} == {n for n in frameworks.default_names() if frameworks.get(n).multi_node}
    with pytest.raises(SweepError, match="single-tower variants; drop cifar100-split"):
        plan(SweepOptions(nodes=2, variants=["cifar100-split"]))
    with pytest.raises(SweepError, match="keras-torch runs on one machine"):
        plan(SweepOptions(nodes=2, frameworks=["keras-torch"]))
