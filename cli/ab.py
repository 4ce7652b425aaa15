"""``bench.py ab``: base and new measured side by side in alternation, judged pair by pair."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import typer
from rich.markup import escape

from benchmarks.interleave import PAIR_STEPS, TURN_S, TURNS
from cli.common import console, err_console, fail, note
from cli.options import Frameworks, Opt, Seed, SplitImpls, Variants, positive_seconds

AB_RESULTS = Path("results/ab.jsonl")
MIN_PAIRS, MAX_PAIRS = 6, 30  # pairs of step servers; see benchmarks.interleave for why
HELP = {
    "base_tree": "Checkout of the base build (e.g. `git worktree add ../base main`); its cells run through its own "
    "bench.py run.",
    "new_tree": "Checkout of the new build. Default: this one.",
    "budget": "Seconds for the whole comparison: pairs are added to undecided cells while the next round fits. The "
    "first --min-pairs always run.",
    "wait_policy": "passive: OpenMP threads sleep when idle (OMP_WAIT_POLICY=PASSIVE, KMP_BLOCKTIME=0), so they do "
    "not spin against other tenants; default: the runtime's own. Recorded in every row.",
    "primitive_cache": "fresh: oneDNN builds its CPU kernels anew at every call (ONEDNN_PRIMITIVE_CACHE_CAPACITY=0), "
    "so no worker keeps a lucky or unlucky set for its whole life (about 5% slower on both sides, far steadier "
    "pairs); kept: oneDNN's cache, as bench.py run measures. Recorded in every row.",
    "pairing": "auto: both trees' workers loaded side by side, taking turns step by step (when both trees have "
    "the step server, for one-device cells), else whole processes; processes: always whole processes.",
    "servers": "With interleaved steps: forked: each pair's two servers are forked from one process per tree and "
    "framework that imported the framework once (PyTorch, Keras on TensorFlow; a few seconds saved per round, so more "
    "pairs fit in --budget); fresh: every pair's servers start from nothing. Recorded in every row.",
    "turn": "With interleaved steps: seconds of steps in one side's turn (the step count is set from the warm-up).",
    "turns": "With interleaved steps: turns each side takes in one pair of servers, which is one piece of evidence "
    f"(more when they would time fewer than {PAIR_STEPS} steps a side).",
    "min_pairs": f"Pairs every cell gets before the first look. Default: {MIN_PAIRS} interleaved, 3 as processes.",
    "max_pairs": f"Pairs a cell gets at most (the last look). Default: {MAX_PAIRS} interleaved, 10 as processes.",
    "summary": "Also write the comparison as JSON (per cell: pairs, change, interval, detectable, verdict; wall time).",
}


def ab(
    base_tree: Opt(Path, "--base-tree", help=HELP["base_tree"]),
    new_tree: Opt(Path | None, "--new-tree", help=HELP["new_tree"]) = None,
    frameworks: Frameworks("torch, keras, keras-jax or keras-torch (repeatable). Default: torch and keras.") = None,
    variants: Variants("Variant (repeatable). Default: the CIFAR-100 two, as run --quick.") = None,
    modes: Opt(list[str] | None, "--mode", "-m", help="train or infer (repeatable). Default: both.") = None,
    batch_sizes: Opt(list[int] | None, "--batch-size", "-b", help="Global batch (repeatable). Default: 16.") = None,
    split_impls: SplitImpls("grouped or towers for split variants. Default: each framework's.") = None,
    steps: Opt(int | None, "--steps", help="Timed steps per process (the minimum under --time-budget).") = None,
    warmup: Opt(int | None, "--warmup", help="Warm-up steps per process. Default: 2, as run --quick.") = None,
    time_budget_s: Opt(float | None, "--time-budget", help="Seconds of timed steps per process. Default: 1.5.") = None,
    gpus: Opt(int, "--gpus", help="GPUs per cell: 0 = CPU.") = 0,
    seed: Seed("Seed for weights and synthetic data, the same on both sides.") = 0,
    threshold: Opt(str, "--threshold", help="Slowdown that counts as a regression, e.g. 5% or 0.05.") = "5%",
    budget_s: Opt(float, "--budget", help=HELP["budget"], callback=positive_seconds) = 360.0,
    min_pairs: Opt(int | None, "--min-pairs", min=2, help=HELP["min_pairs"]) = None,
    max_pairs: Opt(int | None, "--max-pairs", min=2, help=HELP["max_pairs"]) = None,
    pairing: Opt(str, "--pairing", help=HELP["pairing"]) = "auto",
    servers: Opt(str, "--servers", help=HELP["servers"]) = "forked",
    turn_s: Opt(float, "--turn", help=HELP["turn"], callback=positive_seconds) = TURN_S,
    turns: Opt(int, "--turns", min=1, help=HELP["turns"]) = TURNS,
    wait_policy: Opt(str, "--wait-policy", help=HELP["wait_policy"]) = "passive",
    primitive_cache: Opt(str, "--primitive-cache", help=HELP["primitive_cache"]) = "fresh",
    results: Opt(Path, "--results", help="JSON Lines file both sides' rows are appended to.") = AB_RESULTS,
    summary: Opt(Path | None, "--summary", help=HELP["summary"]) = None,
    cell_timeout_s: Opt(float, "--cell-timeout", help="Seconds before a process is killed.") = 900.0,
    markdown: Opt(bool, "--markdown", help="Print Markdown (for a PR comment) instead of a table.") = False,
) -> None:
    """Base against new, paired: two checkouts' cells side by side in ABBA order, judged pair by pair.

    When both trees have the step server, a pair is one new worker process per tree (forked from one that imported
    the framework once, unless --servers fresh), loaded side by side, taking turns of steps; otherwise, saying so,
    each side's cells run through its own tree's bench.py run, a pair being one process of each. Exits 1 when a cell
    is significantly slower by more than the threshold (or works in base and fails in new). Pairs are added to
    undecided cells while --budget lasts, under a sequential rule whose false-alarm rate over every look is at most
    5%.
    """
    started = time.monotonic()  # --budget is the whole comparison's, reading the trees included
    from benchmarks.interleave import LOOK_EVERY, SERVER_STARTS, Interleaving, interleavable, mode_line, run_ab
    from benchmarks.matrix import SweepError, SweepOptions, plan
    from benchmarks.paired import PairedError, PairedRun, check_trees, read_tree, side_environment, this_tree
    from benchmarks.request import RequestError, resolve_frameworks
    from benchmarks.results import ResultsFileError, check_appendable, check_writable, read_results
    from implementations.spec import SpecError
    from reports.compare import parse_threshold
    from reports.paired import SequentialRule, judge_pairs, still_open
    from reports.paired_report import render, to_markdown

    try:
        limit = parse_threshold(threshold)
        names = resolve_frameworks(frameworks, ["torch", "keras"], note)
        options = SweepOptions(frameworks=names, variants=variants or [], modes=modes or [], quick=True, repeats=1,
                               batch_sizes=batch_sizes or [], split_impls=split_impls or [], steps=steps,
                               warmup=warmup, time_budget_s=time_budget_s, gpus=gpus, seed=seed)  # fmt: skip
        cells = plan(options)
        if pairing not in ("auto", "processes"):
            raise PairedError(f"unknown --pairing {pairing!r}; valid: auto, processes")
        if servers not in SERVER_STARTS:
            raise PairedError(f"unknown --servers {servers!r}; valid: {', '.join(SERVER_STARTS)}")
        env = side_environment(os.environ, wait_policy, primitive_cache)
        base, new = read_tree(base_tree, env), read_tree(new_tree or this_tree(), env)
        check_trees(base, new, cells)
        why_not = mode_line(base, new) if pairing == "auto" else None
        steps = pairing == "auto" and why_not is None and any(interleavable(cell) for cell in cells)
        mixed = steps and not all(interleavable(cell) for cell in cells)
        min_pairs = min_pairs or (MIN_PAIRS if steps and not mixed else 3)
        max_pairs = max_pairs or (MAX_PAIRS if steps and not mixed else 10)
        every = LOOK_EVERY if steps and not mixed else 1
        rule = SequentialRule(cells=len(cells), min_pairs=min_pairs, max_pairs=max_pairs, every=every)
        check_writable(results)
        check_appendable(results, read_results(results))
        if summary is not None:
            check_writable(summary)
    except (ValueError, RequestError, SweepError, SpecError, PairedError, ResultsFileError) as error:
        raise fail(str(error)) from None
    left_s = max(budget_s - (time.monotonic() - started), 0.0)
    run = PairedRun(
        cells, base, new, results, left_s, min_pairs, max_pairs, cell_timeout_s, wait_policy, primitive_cache,
        servers=servers,
    )  # fmt: skip
    if why_not:
        note(why_not)
    how = Interleaving(turn_s, turns, rule.every) if steps else None
    paired_how = f"two {servers} step servers taking {turns} or more turns each" if steps else "whole processes"
    err_console.print(
        f"{len(cells)} cells, base {escape(str(base.path))} against new {escape(str(new.path))}: {min_pairs} to "
        f"{max_pairs} pairs each of {paired_how} within {budget_s:g} s, OpenMP wait policy {wait_policy}, "
        f"oneDNN primitives {primitive_cache}",
        highlight=False,
    )

    def on_start(cell, side, pair) -> None:
        if side == "both":
            err_console.print(f"interleaving base and new: {escape(cell.label())}", highlight=False)
        else:
            err_console.print(f"pair {pair + 1} {side:>4}: {escape(cell.label())}", highlight=False)

    def on_row(row) -> None:
        if row.paired.get("mode") == "interleaved-steps" and row.side == "new":  # the second row of a pair
            cell = row.cell
            label = f"{cell['framework']} {cell['variant']} {cell['mode']} bs={cell['batch_size']}"
            err_console.print(f"  pair {row.paired['pair'] + 1}: {escape(label)} ({row.status})", highlight=False)

    try:
        done = run_ab(run, lambda rows: still_open(rows, limit, rule), how, on_start, on_row)
    except ResultsFileError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        raise fail(f"interrupted; every finished side is saved in {results}", code=130) from None
    result = judge_pairs(done.rows, limit, rule)
    result.wall_s, result.stopped = time.monotonic() - started, done.stopped
    if markdown:
        print(to_markdown(result))
    else:
        render(result, console)
    err_console.print(f"{len(done.rows)} rows (both sides) in {escape(str(results))}", highlight=False)
    if summary is not None:
        summary.write_text(json.dumps(result.summary(), indent=2, default=str) + "\n", encoding="utf-8")
    raise typer.Exit(1 if result.has_regressions else 0)
