"""Training parity: both frameworks take the same training steps; how far apart do they end up?

``bench.py train --check-parity`` trains PyTorch and Keras, each in its own process, from the
same initial weights, on the same batches, at the same rates, with the same update rule
(``implementations.paper_sgd``) and the same dropout masks (drawn in NumPy from the seed and the
step), in deterministic mode. What is left is floating-point rounding: different convolution
and matmul kernels sum in different orders. The check prints the per-step relative loss gap and,
after the last step, the largest weight difference per layer (through ``weight_mapping``), and
fails when either exceeds what fp32 rounding has been measured to produce.

Worker: ``python -m benchmarks.train_parity --config '<json>' --steps N --weights-out FILE``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from benchmarks.training import TrainConfig, learning_rate, take_step, training_steps

DEFAULT_STEPS = 50
FRAMEWORKS = ("torch", "keras")

# Tolerances, measured (fp32, CPU, deterministic, shared masks, the paper's rule, seed 0, digits,
# batch 32, the default schedule: 50 steps of the linear warm-up). Observed worst per-step
# relative loss gap: cifar100-single 2.4e-6, cifar100-split 1.9e-6 (step 1: 3e-7 and 4e-7).
# Observed worst weight difference relative to that layer's largest update after 50 steps:
# cifar100-single 1.1e-3, cifar100-split 6.0e-4 (fc8 bias; kernels 1e-4 and below). Headroom:
# about 40x on the loss (1e-4) and 10x on the weights (1e-2). The mutations the tests apply sit
# far above: unshared dropout masks give a step-1 gap near 1e-2, momentum in gradient units or
# decoupled decay move weights by 1e-1 to 1 of an update.
LOSS_RTOL = 1e-4
WEIGHT_RTOL = 1e-2


def parity_config(framework: str, variant: str, split_impl: str, **fields) -> TrainConfig:
    """An accuracy run's configuration in parity mode: deterministic, masks shared, the paper's rule."""
    return replace(TrainConfig(framework, variant, split_impl), deterministic=True, shared_dropout=True, **fields)


def run_steps(config: TrainConfig, steps: int) -> tuple[list[float], dict]:
    """In a worker: the first ``steps`` training steps of ``config``; (losses, weights in PyTorch layout)."""
    from benchmarks.accuracy import make_trainer, training_data
    from implementations.variants import get_variant

    data, trainer, arch = training_data(config), make_trainer(config), get_variant(config.variant)
    losses: list[float] = []
    rate = None
    for index, (epoch, step, per_epoch, batch) in enumerate(training_steps(config, len(data.x_train))):
        if index == steps:
            break
        step_rate = learning_rate(config, epoch, step / per_epoch)
        if step_rate != rate:
            trainer.set_learning_rate(step_rate)
            rate = step_rate
        losses.append(take_step(config, data, trainer, arch, index, batch))
    if len(losses) < steps:
        raise ValueError(f"the run has only {len(losses)} steps; asked for {steps} (more epochs or images)")
    return losses, {"weights": trainer.export_weights(), "environment": trainer.environment()}


@dataclass(frozen=True)
class ParityReport:
    variant: str
    torch_losses: list[float]
    keras_losses: list[float]
    layers: dict[str, dict[str, float]]  # per layer: max_abs, of_update (see compare_weights)
    update_rules: dict[str, str]
    dropout: dict[str, str]

    @property
    def loss_gaps(self) -> np.ndarray:
        """Per step |loss_torch - loss_keras| / |loss_torch|."""
        t, k = np.asarray(self.torch_losses), np.asarray(self.keras_losses)
        return np.abs(t - k) / np.abs(t)

    @property
    def worst_weight(self) -> tuple[str, float]:
        name = max(self.layers, key=lambda layer: self.layers[layer]["of_update"])
        return name, self.layers[name]["of_update"]

    @property
    def passed(self) -> bool:
        return bool(self.loss_gaps.max() <= LOSS_RTOL and self.worst_weight[1] <= WEIGHT_RTOL)


def compare_weights(initial: dict, torch_weights: dict, keras_weights: dict) -> dict[str, dict[str, float]]:
    """Per layer (kernel and bias together, PyTorch layout): the largest difference, and the
    difference's norm relative to the norm of the change training made to the layer (PyTorch's),
    so that a layer that barely moved is judged on how it moved, not on its initial values."""
    layers = {}
    for name, start in initial.items():
        diff = np.concatenate([(torch_weights[name][k] - keras_weights[name][k]).ravel() for k in start])
        update = np.concatenate([(torch_weights[name][k] - start[k]).ravel() for k in start])
        norm, moved = float(np.linalg.norm(diff)), float(np.linalg.norm(update))
        layers[name] = {"max_abs": float(np.abs(diff).max()), "of_update": norm / moved if moved else float("inf")}
    return layers


def _worker_command(config: TrainConfig, steps: int, weights_out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.train_parity",
        "--config",
        config.to_json(),
        "--steps",
        str(steps),
        "--weights-out",
        str(weights_out),
    ]


class ParityError(RuntimeError):
    """A framework's worker did not finish its steps."""


@dataclass(frozen=True)
class Side:
    """One framework's part of a parity run, as its worker returned it."""

    losses: list[float]
    weights: dict
    update_rule: str
    dropout: str


def run_side(config: TrainConfig, steps: int, timeout_s: float = 1800.0) -> Side:
    """Run one framework's worker for ``steps`` steps (its own process; frameworks never share one)."""
    from benchmarks.runner import run_process, worker_environment

    with tempfile.TemporaryDirectory(prefix="train-parity-") as directory:
        out = Path(directory) / "weights.npz"
        result = run_process(_worker_command(config, steps, out), worker_environment(), timeout_s)
        if result["status"] != "ok":
            raise ParityError(f"{config.framework} {config.variant}: {result['status']}: {result.get('error')}")
        metrics = result["metrics"]
        return Side(metrics["step_losses"], _load_weights(out), metrics["update_rule"], metrics["dropout"])


def compare(config: TrainConfig, torch_side: Side, keras_side: Side) -> ParityReport:
    """The report for two sides that ran ``config``'s experiment (its seed and init give the start)."""
    from implementations.initial_weights import initial_weights
    from implementations.variants import get_variant

    initial = initial_weights(get_variant(config.variant), config.seed, config.init)
    return ParityReport(
        config.variant,
        torch_side.losses,
        keras_side.losses,
        compare_weights(initial, torch_side.weights, keras_side.weights),
        {"torch": torch_side.update_rule, "keras": keras_side.update_rule},
        {"torch": torch_side.dropout, "keras": keras_side.dropout},
    )


def check_parity(
    variant: str,
    split_impls: dict[str, str],
    steps: int = DEFAULT_STEPS,
    timeout_s: float = 1800.0,
    **fields,
) -> ParityReport:
    """Run both frameworks' workers in parity mode for ``steps`` steps and compare them."""
    configs = {name: parity_config(name, variant, split_impls[name], **fields) for name in FRAMEWORKS}
    sides = {name: run_side(config, steps, timeout_s) for name, config in configs.items()}
    return compare(configs["torch"], sides["torch"], sides["keras"])


def _save_weights(path: Path, weights: dict) -> None:
    np.savez(path, **{f"{layer}/{key}": value for layer, arrays in weights.items() for key, value in arrays.items()})


def _load_weights(path: Path) -> dict:
    weights: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as archive:
        for entry in archive.files:
            layer, key = entry.split("/")
            weights.setdefault(layer, {})[key] = archive[entry]
    return weights


def summary_lines(report: ParityReport) -> list[str]:
    """The gap curve (first, worst, last step), the worst layer, and the verdict, as plain lines."""
    gaps = report.loss_gaps
    worst = int(gaps.argmax())
    layer, of_update = report.worst_weight
    verdict = "PASS" if report.passed else "FAIL"
    rules = sorted(set(report.update_rules.values()))
    masks = sorted(set(report.dropout.values()))
    return [
        f"{verdict} {report.variant}: {len(gaps)} steps; relative loss gap step 1 {gaps[0]:.2e}, "
        f"worst step {worst + 1} {gaps[worst]:.2e}, last {gaps[-1]:.2e} (tolerance {LOSS_RTOL:.0e})",
        f"  weights after step {len(gaps)}: largest difference in {layer}, {report.layers[layer]['max_abs']:.2e} "
        f"max; difference {of_update:.2e} of its update, in L2 norm (tolerance {WEIGHT_RTOL:.0e})",
        f"  update rule: {' | '.join(rules)}; dropout: {' | '.join(masks)}",
    ]


def render(report: ParityReport, console) -> None:
    from rich.table import Table

    table = Table(title=f"Training parity, {report.variant}: weights after the last step", title_justify="left")
    for header in ("layer", "max |torch - keras|", "||torch - keras|| / ||update||"):
        table.add_column(header, justify="left" if header == "layer" else "right")
    for name, diff in report.layers.items():
        flag = "[red]" if diff["of_update"] > WEIGHT_RTOL else ""
        table.add_row(name, f"{diff['max_abs']:.2e}", f"{flag}{diff['of_update']:.2e}")
    console.print(table)
    gaps = report.loss_gaps
    marks = [0, *range(4, len(gaps), 5)] if len(gaps) > 1 else [0]
    console.print(
        "  relative loss gap by step: " + ", ".join(f"{i + 1}: {gaps[i]:.1e}" for i in marks), highlight=False
    )
    for line in summary_lines(report):
        style = "green" if report.passed else "red"
        console.print(f"[{style}]{line}[/]" if line.startswith(("PASS", "FAIL")) else line, highlight=False)


def run_check(variants: list[str], split_impls: dict[str, dict[str, str]], steps: int, console, **fields) -> int:
    """``bench.py train --check-parity``: 0 when every variant passes, 1 otherwise."""
    failed = False
    for variant in variants:
        console.print(f"training parity: {variant}, {steps} steps per framework ...", highlight=False)
        try:
            report = check_parity(variant, split_impls[variant], steps, **fields)
        except ParityError as error:
            console.print(f"[red]FAIL[/] {error}", highlight=False)
            failed = True
            continue
        render(report, console)
        failed = failed or not report.passed
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    from benchmarks.worker import RESULT_PREFIX

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="TrainConfig as JSON")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--weights-out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        from benchmarks.training import optimiser_metrics

        config = TrainConfig.from_dict(json.loads(args.config))
        losses, extra = run_steps(config, args.steps)
        _save_weights(args.weights_out, extra["weights"])
        result = {
            "status": "ok",
            "metrics": {"step_losses": losses, "environment": extra["environment"], **optimiser_metrics(config)},
        }
    except Exception as error:  # the parent reports it; the worker must still print its one line
        result = {"status": "failed", "error": f"{type(error).__name__}: {error}"[:2000]}
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
