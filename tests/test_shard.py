"""``bench.py run --shard i/n``: shares that cover a sweep exactly once, and their files reported together."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import results_factory as factory

from benchmarks.matrix import SweepOptions, plan
from benchmarks.shard import Shard, ShardError, parse_shard, take_shard
from reports import cell_summary
from reports.load import load_results

ROOT = Path(__file__).resolve().parent.parent

OPTION_SETS = [
    SweepOptions(),
    SweepOptions(quick=True),
    SweepOptions(frameworks=["torch"], batch_sizes=[8, 16, 32], repeats=2),
    SweepOptions(variants=["cifar100-split"], split_impls=["grouped", "towers"], modes=["train"], repeats=3),
]
BEST = SweepOptions(quick=True, best=True, native_bf16=True)  # its PyTorch candidates depend on the CPU launcher


@pytest.mark.parametrize("options", OPTION_SETS)
@pytest.mark.parametrize("count", [2, 3, 7])
def test_shards_cover_the_plan_exactly_once_and_keep_repeats_together(options, count):
    assert_shares_cover_exactly_once(plan(options), count)


@pytest.mark.parametrize("count", [2, 3, 7])
def test_shards_of_a_best_sweep_cover_it_with_and_without_the_cpu_launcher(xeon_launcher, count):
    cells = plan(BEST)
    assert any(cell.xeon_launch for cell in cells) is xeon_launcher
    assert_shares_cover_exactly_once(cells, count)


def assert_shares_cover_exactly_once(cells: list, count: int) -> None:
    shares = [take_shard(cells, Shard(index, count)) for index in range(1, count + 1)]
    taken = Counter(cell for share in shares for cell in share)
    assert set(taken) == set(cells) and set(taken.values()) == {1}  # every cell, none twice
    for share in shares:
        assert share == [cell for cell in cells if cell in share]  # plan order kept
    owner = {replace(cell, repeat=0): index for index, share in enumerate(shares) for cell in share}
    for index, share in enumerate(shares):
        assert all(owner[replace(cell, repeat=0)] == index for cell in share)  # repeats of a cell on one machine
    distinct = [len({replace(cell, repeat=0) for cell in share}) for share in shares]
    assert max(distinct) - min(distinct) <= 1, distinct


def test_every_machine_computes_the_same_share():
    first, second = plan(SweepOptions(quick=True)), plan(SweepOptions(quick=True))
    assert take_shard(first, Shard(2, 3)) == take_shard(second, Shard(2, 3))


@pytest.mark.parametrize(
    "text,message",
    [
        ("0/2", "1 <= i <= n, got 0/2"),
        ("3/2", "1 <= i <= n, got 3/2"),
        ("1/0", "1 <= i <= n, got 1/0"),
        ("half", "--shard takes i/n"),
        ("1/2/3", "--shard takes i/n"),
    ],
)
def test_a_wrong_shard_is_one_line(text, message):
    with pytest.raises(ShardError, match=message.replace("(", r"\(")):
        parse_shard(text)


def test_the_command_line_refuses_a_wrong_shard_before_any_work():
    result = subprocess.run(
        [sys.executable, "bench.py", "run", "--shard", "3/2"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "1 <= i <= n, got 3/2" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.stdout


def test_two_shard_files_report_one_table_per_machine_never_pooled(tmp_path):
    cells = plan(SweepOptions(variants=["imagenet-single", "imagenet-split"], time_budget_s=0))
    rng = factory.np.random.default_rng(0)
    files = []
    for index, hostname in ((1, "bench-a"), (2, "bench-b")):
        host = factory.machine(hostname, cpu=f"CPU of {hostname}")
        rows = [factory.ok_row(cell, factory.step_times(rng, 0.5), host) for cell in take_shard(cells, Shard(index, 2))]
        files.append(factory.write_rows(tmp_path / f"shard-{index}.jsonl", rows))
    loaded = load_results(files)
    assert sorted(loaded.environments["environment"]) == ["bench-a", "bench-b"]
    summary = cell_summary.summarize_cells(loaded.frame)
    assert len(summary) == len({replace(cell, repeat=0) for cell in cells})  # each cell once, on its own machine
    assert summary.groupby(["variant", "mode", "framework"])["environment"].nunique().max() == 1
    assert set(summary["environment"]) == {"bench-a", "bench-b"}
