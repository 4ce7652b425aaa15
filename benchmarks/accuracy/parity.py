"""Training parity: both frameworks take the same training steps; how far apart do they end up?

``bench.py train --check-parity`` trains PyTorch and Keras, each in its own process, from the
same initial weights, on the same batches, at the same rates, with the same update rule
(``implementations.paper_sgd``) and the same dropout masks (drawn in NumPy from the seed and the
step), in deterministic mode. What is left is floating-point rounding: different convolution
and matmul kernels sum in different orders. The check prints the per-step relative loss gap and,
after the last step, the largest weight difference per layer (through ``weight_mapping``), and
fails when either exceeds what fp32 rounding has been measured to produce.

Worker: ``python -m benchmarks.accuracy.parity --config '<json>' --steps N --weights-out FILE``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from benchmarks.accuracy.training import TrainConfig, learning_rate, take_step, training_steps

DEFAULT_STEPS = 50
FRAMEWORKS = ("torch", "keras")

# What fp32 allows is measured in every check, by a control run: Keras again, from initial kernels
# perturbed by one fp32 rounding (relative 2**-24). Training amplifies rounding: on digits at batch
# 32 a control's own loss gap grows from 1e-7 at step 5 to 1e-3 by step 15 and 1e-2 by step 25
# (chaotic dynamics, not a rule difference), so no fixed tolerance fits a 50-step run. A step
# fails when the cross-framework gap exceeds LOSS_FLOOR + LOSS_HEADROOM x the largest control gap
# so far; a layer when its weight difference exceeds WEIGHT_FLOOR + WEIGHT_HEADROOM x the control's.
# Measured (fp32, CPU, deterministic, seed 0, 50 steps; control from perturbed PyTorch kernels):
# cross gaps over steps 1-5 at most 3e-7 (split) and 4e-7 (single) (floor 1e-6: 2.5x); once above
# the floor, cross / running-max control at most 15 (split, step 9: 4.5e-5 against 3e-6) and 20
# (single, step 7: 6e-6 against 3e-7) (headroom 50: 2.5x); weights after 50 steps 0.20-0.68
# (split) and 0.29-0.78 (single) of the update against 0.18-0.62 and 0.25-0.76 for the control,
# ratio at most 1.12 in both (headroom 3). On the tests' 5-step runs (batch 4) the cross weight
# difference is at most 5e-6 of the update (floor 1e-4). Mutations sit far above: unshared masks
# 9e-3 at step 1; momentum in gradient units 2e-1 by step 5; decay outside the momentum 1.5e-5 at
# step 5 (allowed 6e-6) and 5e-3 of the update in conv1 (allowed 1.6e-4).
CONTROL_PERTURBATION = 2.0**-24
LOSS_FLOOR = 1e-6
LOSS_HEADROOM = 50.0
WEIGHT_FLOOR = 1e-4
WEIGHT_HEADROOM = 3.0


def parity_config(framework: str, variant: str, split_impl: str, **fields) -> TrainConfig:
    """An accuracy run's configuration in parity mode: deterministic, masks shared, the paper's rule."""
    return replace(TrainConfig(framework, variant, split_impl), deterministic=True, shared_dropout=True, **fields)


def perturbed_initial_weights(config: TrainConfig, relative: float) -> dict:
    """The config's initial weights, each multiplied by (1 + relative * N(0, 1)), seeded."""
    from implementations.initial_weights import initial_weights
    from implementations.variants import get_variant

    rng = np.random.default_rng([config.seed, 1])
    weights = initial_weights(get_variant(config.variant), config.seed, config.init)
    return {
        layer: {
            "kernel": (arrays["kernel"] * (1 + relative * rng.standard_normal(arrays["kernel"].shape))).astype(
                np.float32
            ),
            "bias": arrays["bias"],
        }
        for layer, arrays in weights.items()
    }


def run_steps(config: TrainConfig, steps: int, perturb_init: float = 0.0) -> tuple[list[float], dict]:
    """In a worker: the first ``steps`` training steps of ``config``; (losses, weights in PyTorch layout).

    ``perturb_init``: start from kernels perturbed by this relative amount (the control run).
    """
    from benchmarks.accuracy.job import make_trainer, training_data
    from implementations.variants import get_variant

    weights = perturbed_initial_weights(config, perturb_init) if perturb_init else None
    data, trainer, arch = training_data(config), make_trainer(config, weights), get_variant(config.variant)
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
        raise ValueError(f"{TOO_FEW_STEPS} {len(losses)} steps; asked for {steps} (more epochs or images)")
    return losses, {"weights": trainer.export_weights(), "environment": trainer.environment()}


@dataclass(frozen=True)
class ParityReport:
    variant: str
    torch_losses: list[float]
    keras_losses: list[float]
    control_losses: list[float]  # Keras from perturbed initial kernels: what rounding alone does
    layers: dict[str, dict[str, float]]  # torch against keras, per layer: max_abs, of_update (compare_weights)
    control_layers: dict[str, dict[str, float]]  # keras against the control
    update_rules: dict[str, str]
    dropout: dict[str, str]

    @staticmethod
    def _gaps(reference: list[float], other: list[float]) -> np.ndarray:
        t, o = np.asarray(reference), np.asarray(other)
        return np.abs(t - o) / np.abs(t)

    @property
    def loss_gaps(self) -> np.ndarray:
        """Per step |loss_torch - loss_keras| / |loss_torch|."""
        return self._gaps(self.torch_losses, self.keras_losses)

    @property
    def control_gaps(self) -> np.ndarray:
        """Per step |loss_keras - loss_control| / |loss_keras|."""
        return self._gaps(self.keras_losses, self.control_losses)

    @property
    def allowed_gaps(self) -> np.ndarray:
        """Per step, the largest loss gap that rounding explains (see the module's tolerances)."""
        return LOSS_FLOOR + LOSS_HEADROOM * np.maximum.accumulate(self.control_gaps)

    def allowed_weight(self, layer: str) -> float:
        return WEIGHT_FLOOR + WEIGHT_HEADROOM * self.control_layers[layer]["of_update"]

    @property
    def failing_steps(self) -> list[int]:
        """Steps (from 1) whose loss gap exceeds what rounding explains."""
        return [int(i) + 1 for i in np.flatnonzero(self.loss_gaps > self.allowed_gaps)]

    @property
    def failing_layers(self) -> list[str]:
        return [name for name, diff in self.layers.items() if diff["of_update"] > self.allowed_weight(name)]

    @property
    def worst_weight(self) -> tuple[str, float]:
        """The layer whose weight difference is largest against what rounding explains, and that difference."""
        name = max(self.layers, key=lambda layer: self.layers[layer]["of_update"] / self.allowed_weight(layer))
        return name, self.layers[name]["of_update"]

    @property
    def passed(self) -> bool:
        return not self.failing_steps and not self.failing_layers


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


def _worker_command(config: TrainConfig, steps: int, weights_out: Path, perturb_init: float = 0.0) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.accuracy.parity",
        "--config",
        config.to_json(),
        "--steps",
        str(steps),
        "--weights-out",
        str(weights_out),
        "--perturb-init",
        repr(perturb_init),
    ]


class ParityError(RuntimeError):
    """A framework's worker did not finish its steps."""


class TooFewSteps(ParityError):
    """More parity steps were asked for than the run has: the user's options, not a framework, are wrong."""


TOO_FEW_STEPS = "the run has only"  # how the worker words it (run_steps)


@dataclass(frozen=True)
class Side:
    """One framework's part of a parity run, as its worker returned it."""

    losses: list[float]
    weights: dict
    update_rule: str
    dropout: str


def run_side(config: TrainConfig, steps: int, timeout_s: float = 1800.0, perturb_init: float = 0.0) -> Side:
    """Run one framework's worker for ``steps`` steps (its own process; frameworks never share one)."""
    from benchmarks.runner import run_process, worker_environment

    with tempfile.TemporaryDirectory(prefix="train-parity-") as directory:
        out = Path(directory) / "weights.npz"
        result = run_process(_worker_command(config, steps, out, perturb_init), worker_environment(), timeout_s)
        if result["status"] != "ok":
            error = str(result.get("error"))
            if TOO_FEW_STEPS in error:
                raise TooFewSteps(f"--parity-steps {steps} is more than the run has: {error.split(': ', 1)[-1]}")
            raise ParityError(f"{config.framework} {config.variant}: {result['status']}: {error}")
        metrics = result["metrics"]
        return Side(metrics["step_losses"], _load_weights(out), metrics["update_rule"], metrics["dropout"])


def compare(config: TrainConfig, torch_side: Side, keras_side: Side, control: Side) -> ParityReport:
    """The report for sides that ran ``config``'s experiment (its seed and init give the start)."""
    from implementations.initial_weights import initial_weights
    from implementations.variants import get_variant

    initial = initial_weights(get_variant(config.variant), config.seed, config.init)
    return ParityReport(
        config.variant,
        torch_side.losses,
        keras_side.losses,
        control.losses,
        compare_weights(initial, torch_side.weights, keras_side.weights),
        compare_weights(initial, keras_side.weights, control.weights),
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
    """Run both frameworks' workers in parity mode for ``steps`` steps, and the control; compare."""
    configs = {name: parity_config(name, variant, split_impls[name], **fields) for name in FRAMEWORKS}
    sides = {name: run_side(config, steps, timeout_s) for name, config in configs.items()}
    control = run_side(configs["keras"], steps, timeout_s, perturb_init=CONTROL_PERTURBATION)
    return compare(configs["torch"], sides["torch"], sides["keras"], control)


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
    """The gap curve (first, worst, last step) beside the control's, the worst layer, and the verdict."""
    gaps, control, allowed = report.loss_gaps, report.control_gaps, report.allowed_gaps
    worst = int(np.argmax(gaps / allowed))
    layer, of_update = report.worst_weight
    verdict = "PASS" if report.passed else "FAIL"
    failing = f"; over at steps {report.failing_steps[:5]}" if report.failing_steps else ""
    return [
        f"{verdict} {report.variant}: {len(gaps)} steps; relative loss gap torch-keras step 1 {gaps[0]:.1e}, "
        f"worst step {worst + 1} {gaps[worst]:.1e} (allowed {allowed[worst]:.1e}), last {gaps[-1]:.1e}{failing}",
        f"  control (keras from kernels perturbed by 2^-24): step 1 {control[0]:.1e}, largest "
        f"{control.max():.1e}, last {control[-1]:.1e}",
        f"  weights after step {len(gaps)}: {layer} differs by {report.layers[layer]['max_abs']:.1e} at most, "
        f"{of_update:.1e} of its update in L2 norm (allowed {report.allowed_weight(layer):.1e}); "
        f"failing layers: {', '.join(report.failing_layers) or 'none'}",
        f"  update rule: {' | '.join(sorted(set(report.update_rules.values())))}; "
        f"dropout: {' | '.join(sorted(set(report.dropout.values())))}",
    ]


def render(report: ParityReport, console) -> None:
    from rich.table import Table

    table = Table(title=f"Training parity, {report.variant}: weights after the last step", title_justify="left")
    headers = ("layer", "max |torch - keras|", "of update (L2)", "control: of update", "allowed")
    for header in headers:
        table.add_column(header, justify="left" if header == "layer" else "right")
    for name, diff in report.layers.items():
        flag = "[red]" if name in report.failing_layers else ""
        control = report.control_layers[name]["of_update"]
        allowed = report.allowed_weight(name)
        table.add_row(
            name, f"{diff['max_abs']:.1e}", f"{flag}{diff['of_update']:.1e}", f"{control:.1e}", f"{allowed:.1e}"
        )
    console.print(table)
    gaps, control = report.loss_gaps, report.control_gaps
    marks = sorted({0, *range(4, len(gaps), 5), len(gaps) - 1})
    console.print(
        "  loss gap by step (torch-keras / keras-control): "
        + ", ".join(f"{i + 1}: {gaps[i]:.0e}/{control[i]:.0e}" for i in marks),
        highlight=False,
    )
    style = "green" if report.passed else "red"
    for line in summary_lines(report):
        console.print(f"[{style}]{line}[/]" if line.startswith(("PASS", "FAIL")) else line, highlight=False)


def run_check(variants: list[str], split_impls: dict[str, dict[str, str]], steps: int, console, **fields) -> int:
    """``bench.py train --check-parity``: 0 when every variant passes, 1 otherwise."""
    failed = False
    for variant in variants:
        console.print(f"training parity: {variant}, {steps} steps per framework ...", highlight=False)
        try:
            report = check_parity(variant, split_impls[variant], steps, **fields)
        except TooFewSteps:
            raise  # the options are wrong: no variant can do better
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
    parser.add_argument("--perturb-init", type=float, default=0.0, help="relative noise on the initial kernels")
    args = parser.parse_args(argv)
    try:
        from benchmarks.accuracy.training import optimiser_metrics

        config = TrainConfig.from_dict(json.loads(args.config))
        losses, extra = run_steps(config, args.steps, args.perturb_init)
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
    from benchmarks.lifeline import die_with_current_parent

    die_with_current_parent()
    sys.exit(main())
