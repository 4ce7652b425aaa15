"""``bench.py ab`` without running a framework: the ABBA order, the paired statistics and their sequential rule,
the base tree's options, and the identity of a paired row (its side and pair are part of its key).

The end-to-end test, a tree whose step does real extra work, is ``tests/test_ab_alone.py`` (``-m alone``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import paired
from benchmarks.cell import CellConfig
from benchmarks.paired import PairedError, PairedRun, Tree, check_trees, order, run_pairs
from benchmarks.results import ResultRow, RowError, done_keys, paired_key, read_results
from reports.compare import Outcome
from reports.load import frame_from_rows, newest_per_key
from reports.paired import SequentialRule, judge_pairs, paired_test, still_open, verdict
from tests.results_factory import machine, ok_row, step_times

CELL = CellConfig("torch", "cifar100-split", "infer", 2, steps=5, warmup=1)
OTHER = CellConfig("torch", "cifar100-single", "infer", 2, steps=5, warmup=1)
ALL_FLAGS = frozenset(paired.NEEDED_FLAGS)


def side_row(cell: CellConfig, side: str, pair: int, median_s: float, seed: int, failed: bool = False) -> ResultRow:
    """A row as ``benchmarks.paired.measure_side`` writes it, with synthetic step times."""
    rng = np.random.default_rng(seed)
    data = ok_row(cell, step_times(rng, median_s, 20, 0.01), machine())
    if failed:
        data.update(status="crashed", metrics=None, error="worker exited")
    data["cell"] = {**data["cell"], "repeat": pair}
    info = {"side": side, "pair": pair, "order": "base-first", "cell_key": cell.key(), "tree": "/t"}
    data.update(key=paired_key(cell.key(), side, pair), paired=info)
    return ResultRow.from_dict(data)


def pairs_of(cell: CellConfig, ratios: list[float], seed: int = 0) -> list[ResultRow]:
    """Base at 0.1 s a step; new at 0.1 / ratio (a throughput ratio new/base per pair)."""
    rows = []
    for pair, ratio in enumerate(ratios):
        rows += [
            side_row(cell, "base", pair, 0.1, seed + 2 * pair),
            side_row(cell, "new", pair, 0.1 / ratio, seed + 2 * pair + 1),
        ]
    return rows


# --- the order -----------------------------------------------------------------------------------------------------


def test_abba_order_alternates_over_pairs_and_cells():
    assert [order(pair, 0) for pair in range(4)] == [("base", "new"), ("new", "base")] * 2
    assert [order(0, index) for index in range(2)] == [("base", "new"), ("new", "base")]


# --- the statistics ------------------------------------------------------------------------------------------------


def test_a_known_ratio_is_recovered_and_flagged():
    rng = np.random.default_rng(1)
    ratios = np.log(0.9) + rng.normal(0, 0.01, 8)
    test = paired_test(ratios, 0.01)
    assert test.change == pytest.approx(-0.1, abs=0.01)
    assert test.low < -0.1 < test.high or abs(test.change + 0.1) < 0.01
    assert test.p_value < 1e-4 and test.detectable < 0.05
    assert verdict(test, 0.05, SequentialRule(min_pairs=3, max_pairs=10)).outcome is Outcome.REGRESSION


def looked_at(ratios: np.ndarray, rule: SequentialRule, threshold: float = 0.05) -> Outcome:
    """The verdict of one cell whose pairs are ``ratios``, taken look by look as the sequential loop does."""
    for n in range(rule.min_pairs, rule.max_pairs + 1, rule.every):
        final = n + rule.every > rule.max_pairs
        test = paired_test(ratios[:n], rule.final_level)
        if final or verdict(test, threshold, rule, final=False).outcome is not Outcome.INCONCLUSIVE:
            return verdict(test, threshold, rule).outcome
    raise AssertionError("the loop always ends at a final look")


def test_a_and_a_gives_no_verdict_in_many_tries():
    rule = SequentialRule(cells=1, min_pairs=3, max_pairs=10)
    rng = np.random.default_rng(2)
    outcomes = [looked_at(rng.normal(0, 0.05, 10), rule, threshold=0.0) for _ in range(2000)]
    flagged = sum(outcome in (Outcome.REGRESSION, Outcome.IMPROVED) for outcome in outcomes)
    # with no threshold every significant test is a flag: the union bound over the looks holds
    assert flagged / len(outcomes) <= rule.alpha


def test_an_interim_look_stops_a_cell_only_on_a_clear_change_or_no_change():
    rule = SequentialRule(cells=8, min_pairs=6, max_pairs=30, every=3)
    noise = np.random.default_rng(3).normal(0, 1, 9)
    modest = np.log(0.92) + 0.05 * (noise - noise.mean()) / noise.std(ddof=1)  # -8%, t = 5: p about 0.001
    test = paired_test(modest, rule.final_level)
    assert rule.interim_level < test.p_value < rule.final_level
    assert verdict(test, 0.05, rule, final=False).outcome is Outcome.INCONCLUSIVE  # more pairs, not a flag yet
    assert verdict(test, 0.05, rule).outcome is Outcome.REGRESSION  # at its last look, flagged
    clear = paired_test(np.log(0.8) + np.random.default_rng(4).normal(0, 0.01, 6), rule.final_level)
    assert verdict(clear, 0.05, rule, final=False).outcome is Outcome.REGRESSION
    quiet = paired_test(np.random.default_rng(5).normal(0, 0.002, 6), rule.final_level)
    assert verdict(quiet, 0.05, rule, final=False).outcome is Outcome.NO_CHANGE


def test_a_quiet_a_and_a_says_no_change_and_a_noisy_one_inconclusive():
    rule = SequentialRule(min_pairs=3, max_pairs=10)
    quiet = verdict(paired_test([0.001, -0.002, 0.0, 0.001, -0.001, 0.002], rule.final_level), 0.05, rule)
    assert quiet.outcome is Outcome.NO_CHANGE
    noisy = verdict(paired_test([0.2, -0.2, 0.1, -0.1], rule.final_level), 0.05, rule)
    assert noisy.outcome is Outcome.INCONCLUSIVE and noisy.text().startswith("inconclusive: need")


def test_the_rule_spends_alpha_over_cells_and_looks():
    rule = SequentialRule(alpha=0.05, cells=4, min_pairs=3, max_pairs=7)
    assert rule.looks == 5
    per_cell = rule.interim_level * (rule.looks - 1) + rule.final_level
    assert per_cell * rule.cells == pytest.approx(rule.alpha)  # the union bound over cells and looks
    assert rule.final_level == pytest.approx(0.8 * 0.05 / 4)  # most of it at a cell's last look
    assert SequentialRule(cells=4, min_pairs=5, max_pairs=5).final_level == pytest.approx(0.05 / 4)  # one look
    with pytest.raises(ValueError, match="--max-pairs"):
        SequentialRule(min_pairs=5, max_pairs=3)


def test_judge_pairs_uses_the_pair_as_unit_and_names_broken_cells():
    rows = pairs_of(CELL, [0.7] * 4) + pairs_of(OTHER, [1.0] * 4, seed=50)
    rows[-1] = side_row(OTHER, "new", 3, 0.1, 99, failed=True)
    result = judge_pairs(rows, 0.05, SequentialRule(cells=2))
    verdicts = dict(zip(result.cells["variant"], result.cells["outcome"], strict=True))
    assert verdicts["cifar100-split"].outcome is Outcome.REGRESSION
    assert verdicts["cifar100-single"].outcome is Outcome.BROKEN
    assert result.has_regressions
    assert result.summary()["cells"][0]["pairs"] in (3, 4)


def turns_row(cell: CellConfig, side: str, pair: int, turn_s: list[float], steps: int = 3) -> ResultRow:
    """An interleaved row as ``benchmarks.interleave`` writes it: ``steps`` steps per turn, turn after turn."""
    times = [t * (1 + 0.001 * step) for t in turn_s for step in range(steps)]
    data = ok_row(cell, times, machine())
    data["cell"] = {**data["cell"], "repeat": pair}
    info = {"side": side, "pair": pair, "order": "base-first", "cell_key": cell.key(), "tree": "/t",
            "mode": "interleaved-steps", "turn_steps": steps, "turns": len(turn_s)}  # fmt: skip
    data.update(key=paired_key(cell.key(), side, pair), paired=info)
    return ResultRow.from_dict(data)


def test_an_offset_between_two_servers_is_one_pairs_evidence_not_one_per_turn():
    """Two servers can differ by a few percent for as long as they live: ten turns that share that offset are one
    pair, so offsets that vary from pair to pair are noise, not a change (they were a false regression when each
    turn counted as a pair)."""
    offsets = [-0.06, 0.01, -0.05, 0.02, -0.06, 0.0]  # new's throughput change in each pair, the same every turn
    rows = []
    for pair, offset in enumerate(offsets):
        base = [0.1] * 10
        base[3] = 0.3  # a turn that a spike hit: the median over turns leaves it out
        rows += [turns_row(CELL, "base", pair, base), turns_row(CELL, "new", pair, [0.1 / (1 + offset)] * 10)]
    result = judge_pairs(rows, 0.01, SequentialRule(min_pairs=3, max_pairs=6))
    cell = result.cells.iloc[0]
    assert cell["pairs"] == len(offsets)
    assert cell["mode"] == CELL.mode and cell["pairing"] == "interleaved-steps"  # the cell's mode, not the pairing's
    assert cell["change"] == pytest.approx(float(np.median(offsets)), abs=0.002)
    assert cell["outcome"].outcome is Outcome.INCONCLUSIVE  # a spread of 3.5% over 6 pairs cannot resolve 1%
    each_turn = paired_test(np.log([1 + o for o in offsets for _ in range(10)]), SequentialRule().final_level)
    assert each_turn.p_value < SequentialRule().interim_level / 100  # counting turns as pairs: "significant"


# --- the sequential loop, with synthetic processes -----------------------------------------------------------------


def fake_run(monkeypatch, tmp_path: Path, ratio: float, noise: float, **limits) -> PairedRun:
    rng = np.random.default_rng(3)

    def measure(run, side, cell, pair, first, run_id, folder):
        median = 0.1 if side == "base" else 0.1 / ratio * math.exp(rng.normal(0, noise))
        return side_row(cell, side, pair, median, int(rng.integers(1 << 30)))

    monkeypatch.setattr(paired, "measure_side", measure)
    tree = Tree(tmp_path, ALL_FLAGS)
    options = {"budget_s": 1000.0, "min_pairs": 3, "max_pairs": 8, **limits}
    return PairedRun([CELL], tree, tree, tmp_path / "ab.jsonl", timeout_s=10, **options)


def judged(run: PairedRun):
    rule = SequentialRule(cells=len(run.cells), min_pairs=run.min_pairs, max_pairs=run.max_pairs)
    return lambda rows: still_open(rows, 0.05, rule)


def test_the_sequential_rule_stops_once_a_cell_is_decided(monkeypatch, tmp_path):
    run = fake_run(monkeypatch, tmp_path, ratio=0.8, noise=0.005)
    done = run_pairs(run, judged(run))
    assert done.stopped == "decided" and len(done.rows) == 2 * run.min_pairs
    assert len(read_results(run.results).rows) == len(done.rows)  # both sides written, as they finished


def test_an_undecided_cell_gets_pairs_up_to_the_maximum_then_stays_inconclusive(monkeypatch, tmp_path):
    run = fake_run(monkeypatch, tmp_path, ratio=1.0, noise=0.3)
    done = run_pairs(run, judged(run))
    assert done.stopped == "max pairs" and len(done.rows) == 2 * run.max_pairs
    result = judge_pairs(done.rows, 0.05, SequentialRule(min_pairs=3, max_pairs=8))
    assert result.cells["outcome"][0].outcome is Outcome.INCONCLUSIVE


def test_the_budget_stops_adding_pairs(monkeypatch, tmp_path):
    run = fake_run(monkeypatch, tmp_path, ratio=1.0, noise=0.3, budget_s=1e-9)
    done = run_pairs(run, judged(run))
    assert done.stopped == "budget" and len(done.rows) == 2 * run.min_pairs  # the first pairs always run


# --- the base tree --------------------------------------------------------------------------------------------------


def test_a_base_too_old_is_refused_in_one_line_naming_what_it_lacks(tmp_path):
    old = Tree(tmp_path, ALL_FLAGS - {"--time-budget", "--seed"})
    with pytest.raises(PairedError, match=r"lacks --time-budget, --seed$") as refused:
        check_trees(old, Tree(tmp_path, ALL_FLAGS), [CELL])
    assert "\n" not in str(refused.value)
    compiled = CellConfig("torch", "cifar100-split", "infer", 2, compiled=True)
    with pytest.raises(PairedError, match="--compile"):
        check_trees(Tree(tmp_path, ALL_FLAGS), Tree(tmp_path, ALL_FLAGS), [compiled])


def test_a_folder_without_bench_py_is_no_base(tmp_path):
    with pytest.raises(PairedError, match="has no bench.py"):
        paired.read_tree(tmp_path, {})


def test_this_tree_reads_its_own_options():
    tree = paired.read_tree(paired.this_tree(), dict(__import__("os").environ))
    check_trees(tree, tree, [CELL])  # this checkout runs every option a paired cell passes


# --- row identity ---------------------------------------------------------------------------------------------------


def test_side_and_pair_are_part_of_a_rows_identity():
    rows = pairs_of(CELL, [1.0, 1.0])
    assert len({row.key for row in rows}) == 4  # two sides x two pairs
    assert len(newest_per_key(rows)) == 4  # "newest per key" folds none of them
    assert CELL.key() not in done_keys(rows)  # --resume of a plain run does not take them for its cell
    again = ResultRow.from_dict(rows[1].to_dict())
    assert again.side == "new" and again.paired["pair"] == 0 and again == rows[1]
    plain = ResultRow.from_dict(ok_row(CELL, [0.1, 0.1], machine()))
    assert plain.side == "" and "paired" not in plain.to_dict()  # a plain row is written as before


def test_a_report_keeps_base_and_new_apart():
    frame = frame_from_rows(pairs_of(CELL, [1.0]))
    assert sorted(frame["environment"]) == ["bench-a (base)", "bench-a (new)"]
    assert sorted(frame["side"]) == ["base", "new"]


def test_a_row_with_a_wrong_side_is_refused():
    data = pairs_of(CELL, [1.0])[0].to_dict()
    data["paired"] = {**data["paired"], "side": "old"}
    with pytest.raises(RowError, match="paired.side"):
        ResultRow.from_dict(data)
