"""``bench.py train``: both frameworks from the same weights on the same batches; accuracy, or step-for-step parity."""

from pathlib import Path

import typer

from benchmarks.request import TrainRequest
from cli.common import console, execute, fail, note, warn
from cli.options import BatchSize, Frameworks, Opt, ResultsFile, Seconds, Seed, Variants, command

HELP = {
    "frameworks": "torch or keras (repeatable). Default: both.",
    "variants": "Variant (repeatable). Default: cifar100-single and cifar100-split.",
    "dataset": "digits (bundled, offline) or cifar100 (the official archive).",
    "epochs": "Passes over the training set.",
    "batch_size": "Images per SGD step.",
    "learning_rate": "Base learning rate; divided by 10 at 75% of the epochs.",
    "warmup_epochs": "Epochs over which the rate rises linearly to its base value (0: none).",
    "split_impl": "grouped or towers for split variants. Default: per framework, as in run.",
    "init": "Initial weights: torch-default or paper (N(0, 0.01), unit biases).",
    "seed": "Seed for weights, data split and batch order.",
    "deterministic": "Deterministic kernels in both frameworks (slower).",
    "check_repro": "Run each job twice (deterministic) and check the per-step losses are identical.",
    "target_top1": "Top-1 accuracy whose time-to-reach is reported.",
    "max_train_images": "Use only this many training images per epoch (quick checks).",
    "data_dir": "Where the data set is (searched before the Keras and torchvision caches).",
    "download": "Download CIFAR-100 from its official source if it is not found.",
    "timeout_s": "Seconds before a training worker is killed.",
    "check_parity": "Instead of training to the end: both frameworks take the same first steps (deterministic, "
    "shared dropout masks); exit 1 when their losses or weights part by more than fp32 rounding.",
    "parity_steps": "Steps per framework for --check-parity.",
}
# Every option of ``bench.py train``, in the order --help lists them: the field of TrainRequest it fills -> its
# flags, type, help and checks (the defaults are the request's).
TRAIN_OPTIONS = {
    "frameworks": Frameworks(HELP["frameworks"]),
    "variants": Variants(HELP["variants"]),
    "dataset": Opt(str, "--dataset", help=HELP["dataset"]),
    "epochs": Opt(int, "--epochs", min=1, help=HELP["epochs"]),
    "batch_size": BatchSize(HELP["batch_size"], "-b"),
    "learning_rate": Opt(float, "--learning-rate", min=0.0, help=HELP["learning_rate"]),
    "warmup_epochs": Opt(float, "--warmup-epochs", min=0.0, help=HELP["warmup_epochs"]),
    "split_impl": Opt(str | None, "--split-impl", help=HELP["split_impl"]),
    "init": Opt(str, "--init", help=HELP["init"]),
    "seed": Seed(HELP["seed"]),
    "deterministic": Opt(bool, "--deterministic", help=HELP["deterministic"]),
    "check_repro": Opt(bool, "--check-repro", help=HELP["check_repro"]),
    "target_top1": Opt(float, "--target-top1", min=0.0, max=1.0, help=HELP["target_top1"]),
    "max_train_images": Opt(int | None, "--max-train-images", min=1, help=HELP["max_train_images"]),
    "data_dir": Opt(Path | None, "--data-dir", help=HELP["data_dir"]),
    "download": Opt(bool, "--download", help=HELP["download"]),
    "results": ResultsFile,
    "timeout_s": Seconds("--timeout", HELP["timeout_s"]),
    "check_parity": Opt(bool, "--check-parity", help=HELP["check_parity"]),
    "parity_steps": Opt(int, "--parity-steps", min=1, help=HELP["parity_steps"]),
}


@command(TrainRequest, TRAIN_OPTIONS)
def train(**options) -> None:
    """Train both frameworks from the same weights on the same batches; compare their accuracy.

    Each framework trains in its own process: same initial weights (drawn once in NumPy), same
    images in the same order, same schedule and update rule (the paper's SGD: momentum 0.9, coupled
    weight decay 5e-4). Rows (mode "accuracy", with the per-epoch curve) go to --results.
    --check-parity trains only the first --parity-steps steps, with shared dropout masks, and
    compares the two frameworks' losses and weights step for step.
    """
    from benchmarks.request import RequestError, plan_training

    request = TrainRequest(**options)
    try:
        planned = plan_training(request, left_out=note)
    except RequestError as error:
        raise fail(str(error)) from None
    if request.check_parity:
        raise typer.Exit(check_parity_steps(planned, request.parity_steps, request.timeout_s))
    for warning in planned.warnings:
        warn(warning)
    rows = [row.to_dict() for row in execute(planned, "training run")]

    from reports.accuracy_summary import loss_gaps, render_accuracy, repro_verdicts

    render_accuracy(rows, console)
    for line in loss_gaps(rows):
        console.print(line, highlight=False)
    verdicts = repro_verdicts(rows) if request.check_repro else []
    for ok, line in verdicts:
        console.print(("[green]reproducible[/] " if ok else "[red]NOT reproducible[/] ") + line, highlight=False)
    if any(row["status"] != "ok" for row in rows) or any(not ok for ok, _ in verdicts):
        raise typer.Exit(1)


def check_parity_steps(planned, steps: int, timeout_s: float) -> int:
    """--check-parity: both frameworks' first steps side by side; its exit code."""
    from benchmarks.accuracy.parity import TooFewSteps, run_check

    impls = planned.parity_impls
    try:
        return run_check(list(impls), impls, steps, console, timeout_s=timeout_s, **planned.parity_fields)
    except TooFewSteps as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        raise fail("interrupted; the parity check writes nothing, so nothing is lost", code=130) from None
