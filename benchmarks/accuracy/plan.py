"""The jobs of ``bench.py train``, checked before any worker starts: names, shapes and the data itself."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks import frameworks
from benchmarks.accuracy.datasets import DATASETS, DatasetError, cifar100_search_dirs, find_cifar100
from benchmarks.accuracy.training import TrainConfig
from implementations.initial_weights import SCHEMES
from implementations.spec import SpecError
from implementations.variants import SPLIT_IMPLS, get_variant

DEFAULT_VARIANTS = ("cifar100-single", "cifar100-split")
DATA_SHAPE = (3, 32, 32)  # both data sets arrive as 32x32 RGB (digits are upsampled)


class TrainingPlanError(ValueError):
    """Options that describe no valid training run; the message says which and what is valid."""


@dataclass(frozen=True)
class TrainingPlan:
    frameworks: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    split_impl: str | None = None  # None: each framework's default
    repeats: int = 1  # 2 with --check-repro: each job twice


def _refuse_unknown(kind: str, given: list[str], valid: tuple[str, ...]) -> None:
    wrong = [value for value in given if value not in valid]
    if wrong:
        raise TrainingPlanError(f"{', '.join(map(repr, wrong))}: unknown {kind}; valid: {', '.join(valid)}")


def training_jobs(plan: TrainingPlan, template: TrainConfig) -> list[TrainConfig]:
    """One job per variant and framework (twice each with ``repeats=2``), from ``template``'s settings."""
    trainable = tuple(name for name in frameworks.names() if frameworks.get(name).trains)
    names = list(plan.frameworks) or [name for name in frameworks.default_names() if name in trainable]
    _refuse_unknown("framework", names, trainable)
    _refuse_unknown("dataset", [template.dataset], DATASETS)
    _refuse_unknown("split implementation", [plan.split_impl] if plan.split_impl else [], SPLIT_IMPLS)
    _refuse_unknown("initialisation", [template.init], SCHEMES)
    jobs = []
    for variant in plan.variants or DEFAULT_VARIANTS:
        try:
            arch = get_variant(variant)
        except SpecError as error:
            raise TrainingPlanError(str(error)) from None
        if tuple(arch.input_shape) != DATA_SHAPE:
            raise TrainingPlanError(
                f"{variant} takes {'x'.join(map(str, arch.input_shape[1:]))} images, but {template.dataset} has 32x32; "
                f"train a CIFAR-100-shaped variant ({', '.join(DEFAULT_VARIANTS)})"
            )
        for name in names:
            impl = plan.split_impl or frameworks.default_split_impl(name, variant)
            jobs += [replace(template, framework=name, variant=variant, split_impl=impl)] * plan.repeats
    return jobs


def check_data(dataset: str, data_dir: Path | None, download: bool) -> None:
    """Refuse a missing data set before the sweep, in one line, rather than once per job."""
    if data_dir is not None and not data_dir.is_dir():
        raise DatasetError(f"--data-dir {data_dir} is not a folder")
    if dataset == "cifar100" and not download:
        dirs = cifar100_search_dirs(data_dir)
        if find_cifar100(dirs) is None:
            raise DatasetError(
                f"CIFAR-100 not found in {', '.join(map(str, dirs))}; pass --data-dir to where "
                "cifar-100-python.tar.gz is, or --download to fetch it"
            )
