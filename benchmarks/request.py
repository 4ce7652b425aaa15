"""What a command was asked, as one object built from its options by keyword, checked once, then carried out.

``bench.py run`` builds a :class:`SweepRequest` (the sweep's options and the run's own: results file, timeouts,
shard, nodes), ``bench.py train`` a :class:`TrainRequest`. Each value keeps the name and form it has on the
command line all the way to the cells and rows. ``plan_run`` / ``plan_training`` check a request against the host
and the results file and return what will run, with the lines the user should read first; ``run_request`` runs
it. The command line only parses options and renders; ``reports`` supplies the progress callbacks and tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import frameworks
from benchmarks.cell import CellConfig
from benchmarks.host import Host
from benchmarks.matrix import SweepError, SweepOptions, default_cell_timeout, model_parallel_note, plan
from benchmarks.multinode import MultiNodeError, NodeSetup, check_port_free, node_setup
from benchmarks.results import ResultRow, ResultsFileError, check_writable, check_writable_folder
from benchmarks.runner import WorkerJob
from benchmarks.shard import ShardError, parse_shard, take_shard
from benchmarks.sweep import Sweep, execute, open_sweep
from implementations.spec import SpecError

if TYPE_CHECKING:
    from benchmarks.accuracy.training import TrainConfig

RESULTS = Path("results/results.jsonl")
Say = Callable[[str], None]


class RequestError(ValueError):
    """A request that cannot run as asked; the message is one line for the user."""


def resolve_frameworks(given: list[str] | None, candidates: list[str], left_out: Say) -> list[str]:
    """The frameworks the user named; else those of ``candidates`` this installation has, one line for each left out."""
    if given:
        return list(given)
    found, missing = frameworks.installed(candidates)
    for line in missing:
        left_out(line)
    if not found:
        raise RequestError(f"none of {', '.join(candidates)} is installed; see the lines above")
    return found


@dataclass
class SweepRequest(SweepOptions):
    """``bench.py run``'s options: the sweep's (SweepOptions) and the run's, by the names the command gives them."""

    gpus: int | None = None  # None: every GPU the host has
    nodes: int | None = None  # None: SLURM_NNODES, else 1
    results: Path = RESULTS
    resume: bool = False
    cell_timeout_s: float | None = None  # None: default_cell_timeout
    memory_limit_gb: float | None = None
    report_dir: Path | None = None  # None: next to the results
    no_report: bool = False
    shard: str | None = None  # "i/n"
    rendezvous: str | None = None
    node_rank: int | None = None
    rdzv_id: str | None = None
    join_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        for option in fields(SweepOptions):  # a repeatable option not given arrives as None
            if getattr(self, option.name) is None and option.default_factory is list:
                setattr(self, option.name, [])


@dataclass
class Planned:
    """What a request will run: the open sweep and how each worker is bounded."""

    sweep: Sweep | None  # None: nothing is written (a node other than the first, a training-parity check)
    timeout_s: float | None
    memory_limit_gb: float | None = None
    gpu_uuids: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)  # from reading the results file
    notes: list[str] = field(default_factory=list)  # what the plan chose that the user did not spell out


@dataclass
class PlannedRun(Planned):
    request: SweepRequest | None = None  # as resolved on this host: frameworks, GPUs, nodes, bf16
    cells: list[CellConfig] = field(default_factory=list)
    setup: NodeSetup = field(default_factory=NodeSetup)
    report_to: Path | None = None


def _gpus(request: SweepRequest, host: Host) -> int:
    if request.gpus is None:
        return len(host.gpus)
    if request.gpus > len(host.gpus):
        seen = f"found {len(host.gpus)}" + (f" ({', '.join(host.gpus)})" if host.gpus else f": {host.gpu_probe}")
        raise RequestError(f"asked for {request.gpus} GPUs but {seen}")
    return request.gpus


def plan_run(request: SweepRequest, host: Host, environ: Mapping[str, str], left_out: Say) -> PlannedRun:
    """The cells of ``request`` on this host and node, the results file opened for them; RequestError if it cannot."""
    try:
        share = parse_shard(request.shard) if request.shard is not None else None
        setup = node_setup(
            environ, request.nodes, request.rendezvous, request.node_rank, request.rdzv_id, request.join_timeout_s
        )
    except (ShardError, MultiNodeError) as error:
        raise RequestError(str(error)) from None
    if setup.nodes > 1 and request.resume:
        raise RequestError("--resume is for one machine: every node of a multi-node run must run the same cells")
    gpus = _gpus(request, host)
    candidates = [name for name in frameworks.default_names() if setup.nodes == 1 or frameworks.get(name).multi_node]
    names = resolve_frameworks(request.frameworks, candidates, left_out)
    request = replace(request, frameworks=names, gpus=gpus, nodes=setup.nodes, native_bf16=host.native_bf16)
    report_to = None if request.no_report else (request.report_dir or request.results.parent / "report")
    timeout = request.cell_timeout_s if request.cell_timeout_s is not None else default_cell_timeout(gpus)
    planned = PlannedRun(None, timeout, request.memory_limit_gb, host.gpu_uuids, request=request, setup=setup)
    try:
        cells = plan(request)
        planned.cells = setup.place(take_shard(cells, share) if share else cells)
        if not setup.first:  # it takes part in each cell as node 0 runs it, bounded only by --cell-timeout
            planned.timeout_s = request.cell_timeout_s
            return planned
        check_port_free(setup)
        check_writable(request.results)  # both outputs are checked before either is touched (no empty file left)
        if report_to is not None:
            check_writable_folder(report_to, "the report")
        planned.sweep = open_sweep(planned.cells, request.results, request.resume)
    except (SweepError, SpecError, ResultsFileError, MultiNodeError) as error:
        raise RequestError(str(error)) from None
    planned.report_to, planned.warnings = report_to, planned.sweep.warnings
    if note := model_parallel_note(request):
        planned.notes.append(f"note: {note}")
    if request.best and not gpus and not request.simulate_devices and not host.native_bf16:
        planned.notes.append(
            "note: bf16 not tried: this CPU has no native bf16 (AVX512-BF16/AMX); emulated bf16 is far "
            "slower than fp32. Ask for it with --precision bf16."
        )
    if request.resume:
        sweep = planned.sweep
        planned.notes.append(f"resuming: {sweep.skipped} of {len(sweep.jobs)} cells already done in {request.results}")
    return planned


@dataclass(frozen=True)
class TrainRequest:
    """``bench.py train``'s options, by the names the command gives them."""

    frameworks: list[str] | None = None
    variants: list[str] | None = None
    dataset: str = "digits"
    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 0.01
    warmup_epochs: float = 1.0
    split_impl: str | None = None  # None: each framework's default
    init: str = "torch-default"
    seed: int = 0
    deterministic: bool = False
    check_repro: bool = False  # each job twice, deterministic
    target_top1: float = 0.9
    max_train_images: int | None = None
    data_dir: Path | None = None
    download: bool = False
    results: Path = RESULTS
    timeout_s: float = 7200.0
    check_parity: bool = False
    parity_steps: int = 50

    def template(self) -> TrainConfig:
        """Every job's settings but those ``training_jobs`` gives each job: framework, variant, formulation."""
        from benchmarks.accuracy.training import TrainConfig

        data_dir = self.data_dir.expanduser().resolve() if self.data_dir else None  # workers run from the root
        names = [f.name for f in fields(TrainConfig) if f.name not in PER_JOB and hasattr(self, f.name)]
        shared = {name: getattr(self, name) for name in names}
        shared |= {"deterministic": self.deterministic or self.check_repro, "data_dir": data_dir and str(data_dir)}
        return TrainConfig(framework="", **shared)


PER_JOB = ("framework", "variant", "split_impl")


# What a training-parity check takes from the request (it sets its own determinism and dropout).
PARITY_FIELDS = ("dataset", "epochs", "batch_size", "learning_rate", "warmup_epochs", "init", "seed")
PARITY_FIELDS += ("max_train_images", "data_dir", "download")


@dataclass
class PlannedTraining(Planned):
    jobs: list[TrainConfig] = field(default_factory=list)
    parity_impls: dict[str, dict[str, str]] = field(default_factory=dict)  # --check-parity: variant -> formulations
    parity_fields: dict = field(default_factory=dict)


def plan_training(request: TrainRequest, left_out: Say) -> PlannedTraining:
    """The jobs of ``request``, its data checked and the results file opened; RequestError if it cannot run."""
    from benchmarks.accuracy import parity
    from benchmarks.accuracy.datasets import DatasetError
    from benchmarks.accuracy.plan import TrainingPlan, TrainingPlanError, check_data, training_jobs

    template = request.template()
    trainable = [name for name in frameworks.default_names() if frameworks.get(name).trains]
    names = resolve_frameworks(request.frameworks, trainable, left_out)
    repeats = 2 if request.check_repro else 1
    training = TrainingPlan(tuple(names), tuple(request.variants or ()), request.split_impl, repeats=repeats)
    planned = PlannedTraining(None, request.timeout_s)
    try:
        planned.jobs = training_jobs(training, template)
        check_data(request.dataset, Path(template.data_dir) if template.data_dir else None, request.download)
        if request.check_parity:
            for job in planned.jobs:
                planned.parity_impls.setdefault(job.variant, {})[job.framework] = job.split_impl
            if any(set(sides) != set(parity.FRAMEWORKS) for sides in planned.parity_impls.values()):
                both = " and ".join(parity.FRAMEWORKS)
                raise RequestError(f"--check-parity trains {both} side by side: give both with -f, or neither")
            planned.parity_fields = {name: getattr(template, name) for name in PARITY_FIELDS}
            return planned
        planned.sweep = open_sweep(planned.jobs, request.results)
    except (TrainingPlanError, DatasetError, ResultsFileError) as error:
        raise RequestError(str(error)) from None
    planned.warnings = planned.sweep.warnings
    return planned


def run_request(
    planned: Planned,
    on_start: Callable[[int, WorkerJob], None] = lambda index, job: None,
    on_row: Callable[[ResultRow], None] = lambda row: None,
) -> list[ResultRow]:
    """Run a planned sweep's remaining jobs under the lock of its results file; the rows written, in order."""
    from benchmarks.measure.environment import machine_environment

    limit = int(planned.memory_limit_gb * 2**30) if planned.memory_limit_gb else None
    return execute(
        planned.sweep,
        machine_environment(),
        timeout_s=planned.timeout_s,
        memory_limit_bytes=limit,
        gpu_uuids=planned.gpu_uuids,
        on_start=on_start,
        on_row=on_row,
    )
