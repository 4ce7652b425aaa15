"""Accuracy rows side by side, the loss gap between frameworks, and reproducibility verdicts."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks import frameworks

# Fields that make two accuracy runs "the same experiment" apart from the framework.
_EXPERIMENT = (
    "variant",
    "dataset",
    "epochs",
    "batch_size",
    "learning_rate",
    "init",
    "seed",
    "max_train_images",
    "shared_dropout",
)


def rule_name(metrics: dict) -> str:
    """The update rule a row ran, by name ('paper', ...); rows from before rules were named: 'unnamed'."""
    return str(metrics.get("update_rule") or "unnamed").split(" (")[0]


def _experiment(row: dict) -> tuple:
    return tuple(row["cell"].get(field) for field in _EXPERIMENT)


def render_accuracy(rows: list[dict], console: Console) -> None:
    table = Table(title="Accuracy after training (test set)", title_justify="left")
    labels = ("variant", "dataset", "framework", "update rule")
    for header in (*labels, "top-1", "top-5", "test loss", "train img/s", "time to target"):
        table.add_column(header, justify="left" if header in labels else "right")
    for row in sorted(rows, key=lambda r: (_experiment(r), r["cell"]["framework"])):
        cell, m = row["cell"], row.get("metrics") or {}
        if row["status"] != "ok":
            table.add_row(
                cell["variant"], cell["dataset"], cell["framework"], "", f"[red]{row['status']}[/]", "", "", "", ""
            )
            continue
        target = m.get("time_to_target_s")
        reached = f"{target:.0f} s" if target is not None else f"not reached ({m['target_top1']:.0%})"
        table.add_row(
            cell["variant"],
            cell["dataset"],
            cell["framework"],
            rule_name(m),
            f"{m['top1']:.2%}",
            f"{m['top5']:.2%}",
            f"{m['test_loss']:.3f}",
            f"{m['train_images_per_s']:,.0f}",
            reached,
        )
    console.print(table)


def loss_gap(torch_losses: list[float], keras_losses: list[float], first: int = 20) -> dict[str, float]:
    """Per-step |loss_torch - loss_keras|: over the first steps, and over the whole run."""
    steps = min(len(torch_losses), len(keras_losses))
    gap = np.abs(np.asarray(torch_losses[:steps]) - np.asarray(keras_losses[:steps]))
    head = gap[:first]
    return {
        "steps": steps,
        "first_steps": len(head),
        "first_mean": float(head.mean()) if len(head) else float("nan"),
        "first_max": float(head.max()) if len(head) else float("nan"),
        "step1": float(gap[0]) if steps else float("nan"),
        "all_mean": float(gap.mean()) if steps else float("nan"),
        "all_max": float(gap.max()) if steps else float("nan"),
    }


def loss_gaps(rows: list[dict], first: int = 20) -> list[str]:
    """One line per experiment that both frameworks finished: how far their training losses drift."""
    by_experiment: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for row in rows:
        if row["status"] == "ok":
            by_experiment[_experiment(row)].setdefault(row["cell"]["framework"], row)
    first_name, second_name = frameworks.default_names()  # the pair compared: native PyTorch, Keras on TensorFlow
    lines = []
    for experiment, runs in by_experiment.items():
        if first_name in runs and second_name in runs:
            torch_m, keras_m = runs[first_name]["metrics"], runs[second_name]["metrics"]
            gap = loss_gap(torch_m["step_losses"], keras_m["step_losses"], first)
            lines.append(
                f"loss gap {experiment[0]} on {experiment[1]}: step 1 {gap['step1']:.2e}; first {gap['first_steps']} "
                f"steps mean {gap['first_mean']:.2e}, max {gap['first_max']:.2e}; all {gap['steps']} steps mean "
                f"{gap['all_mean']:.2e}, max {gap['all_max']:.2e} ({_what_differs(torch_m, keras_m)})"
            )
    return lines


def _what_differs(torch_metrics: dict, keras_metrics: dict) -> str:
    """What a loss gap between the two frameworks can come from, besides rounding."""
    rules = {rule_name(torch_metrics), rule_name(keras_metrics)}
    rule = (
        f"update rule {rules.pop()} in both"
        if len(rules) == 1
        else f"update rules differ: {' vs '.join(sorted(rules))}"
    )
    shared = {torch_metrics.get("dropout"), keras_metrics.get("dropout")} == {"shared masks from (seed, step)"}
    return f"{rule}; " + ("dropout masks shared" if shared else "dropout masks differ between frameworks")


def repro_verdicts(rows: list[dict]) -> list[tuple[bool, str]]:
    """For runs repeated with the same key: are their per-step losses bit-identical?"""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_key[row["key"]].append(row)
    verdicts = []
    for same in by_key.values():
        if len(same) < 2:
            continue
        cell = same[0]["cell"]
        label = f"{cell['framework']} {cell['variant']} on {cell['dataset']}"
        if any(row["status"] != "ok" for row in same):
            verdicts.append((False, f"{label}: a run failed"))
            continue
        losses = [row["metrics"]["step_losses"] for row in same]
        differing = [i for i, values in enumerate(zip(*losses, strict=True)) if len(set(values)) > 1]
        if differing:
            verdicts.append(
                (
                    False,
                    f"{label}: losses differ from step {differing[0] + 1} ({len(differing)} of {len(losses[0])} steps)",
                )
            )
        else:
            verdicts.append((True, f"{label}: {len(losses[0])} step losses identical across {len(same)} runs"))
    return verdicts
