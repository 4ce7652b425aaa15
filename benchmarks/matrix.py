"""The sweep: which cells ``bench.py run`` measures, from the user's options and sensible defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

from benchmarks import frameworks
from benchmarks.cell import GPU_DEFAULT_MATH_MODE, MODES, CellConfig
from benchmarks.fast_paths import candidates
from implementations.variants import BUILDABLE_VARIANTS, PAPER_VARIANTS, SPLIT_IMPLS, get_variant

PRECISIONS = ("fp32", "bf16")


class SweepError(ValueError):
    """Options that describe no valid sweep; the message says which and what is valid."""


@dataclass(frozen=True)
class Preset:
    variants: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    steps: int  # the minimum with a time budget, the exact count without
    warmup: int
    # Processes per cell. Most of the run-to-run spread is between processes, and `compare` judges
    # per-process medians: 3 is the fewest that measures that spread on both sides (reports.statistics).
    repeats: int = 3
    time_budget_s: float = 0.0  # seconds of timed steps per process (benchmarks.measure.timing.time_by_budget)
    target_precision: float = 0.02  # stop early once the median is known within +-2%


CPU_DEFAULT = Preset(PAPER_VARIANTS, (32,), steps=5, warmup=3, time_budget_s=5.0)
GPU_DEFAULT = Preset(PAPER_VARIANTS, (128,), steps=20, warmup=10, time_budget_s=5.0)
# A first look: one process per cell (about a minute on 2 cores); its findings say the spread is unmeasured.
# Judging a change is ``bench.py ab``'s (base and new side by side) or ``--repeats``'s.
QUICK = Preset(("cifar100-single", "cifar100-split"), (16,), steps=5, warmup=2, repeats=1, time_budget_s=1.5)


@dataclass
class SweepOptions:
    frameworks: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    split_impls: list[str] = field(default_factory=list)
    steps: int | None = None
    warmup: int | None = None
    repeats: int | None = None  # None: the preset's
    time_budget_s: float | None = None  # None: the preset's; 0: exactly ``steps`` steps
    target_precision: float | None = None
    gpus: int = 0
    simulate_devices: int = 0
    quick: bool = False
    seed: int = 0
    precision: str = "fp32"
    math_mode: str | None = None  # fp32 (strict) or tf32 for fp32 cells; None: fp32 on CPU, tf32 on GPU
    compiled: bool = False
    channels_last: bool = False
    xeon_launch: bool = False  # PyTorch on CPUs: start workers through torch.backends.xeon.run_cpu
    cuda_graphs: bool = False  # PyTorch on one GPU: each step replayed from one captured CUDA graph
    best: bool = False  # try every fast path against each baseline (benchmarks.fast_paths)
    native_bf16: bool = False  # the host's (benchmarks.host): whether --best tries bf16 on the CPU
    nodes: int = 1  # machines, data-parallel over all of them (benchmarks.multinode)


def _check_choices(kind: str, given: list, valid: tuple) -> None:
    wrong = [value for value in given if value not in valid]
    if wrong:
        raise SweepError(f"unknown {kind} {', '.join(map(repr, wrong))}; valid: {', '.join(valid)}")


def validate(options: SweepOptions) -> None:
    _check_choices("framework", options.frameworks, frameworks.names())
    for name in options.frameworks:
        if reason := frameworks.get(name).missing():
            raise SweepError(reason)
    _check_choices("variant", options.variants, BUILDABLE_VARIANTS)
    _check_choices("mode", options.modes, MODES)
    _check_choices("split implementation", options.split_impls, SPLIT_IMPLS)
    bad_batches = [b for b in options.batch_sizes if b < 1]
    if bad_batches:
        raise SweepError(f"batch size must be at least 1, got {', '.join(map(str, bad_batches))}")
    if options.steps is not None and options.steps < 1:
        raise SweepError(f"--steps must be at least 1, got {options.steps}")
    if options.warmup is not None and options.warmup < 1:
        raise SweepError(
            f"--warmup must be at least 1 (the first step is always compile/tracing), got {options.warmup}"
        )
    if options.time_budget_s is not None and options.time_budget_s < 0:
        raise SweepError(
            f"--time-budget must be 0 (a fixed --steps count) or more seconds, got {options.time_budget_s}"
        )
    if options.target_precision is not None and not 0 <= options.target_precision < 1:
        raise SweepError(f"--target-precision must be a fraction below 1 (0.02 for 2%), got {options.target_precision}")
    if options.repeats is not None and options.repeats < 1:
        raise SweepError(f"--repeats must be at least 1, got {options.repeats}")
    if options.gpus < 0:
        raise SweepError(f"--gpus must be 0 (CPU) or more, got {options.gpus}")
    if options.simulate_devices and options.gpus > 1:
        raise SweepError(
            "--simulate-devices runs several logical devices on the CPU, or on one GPU with --gpus 1; "
            f"it cannot be combined with --gpus {options.gpus}"
        )
    if options.precision not in PRECISIONS:
        raise SweepError(f"unknown precision {options.precision!r}; valid: {', '.join(PRECISIONS)}")
    if options.nodes < 1:
        raise SweepError(f"--nodes must be at least 1, got {options.nodes}")
    if options.nodes > 1 and options.simulate_devices:
        raise SweepError("--simulate-devices splits one machine's CPU; it cannot be combined with --nodes")
    split = [name for name in options.variants if get_variant(name).is_split]
    if options.nodes > 1 and split:
        raise SweepError(f"several nodes run data-parallel, which takes single-tower variants; drop {', '.join(split)}")
    if options.simulate_devices == 1 or options.simulate_devices < 0:
        raise SweepError(f"--simulate-devices needs at least 2 devices, got {options.simulate_devices}")
    if options.math_mode is not None and options.math_mode not in ("fp32", "tf32"):
        raise SweepError(f"unknown math mode {options.math_mode!r}; valid: fp32 (strict), tf32")
    if options.math_mode == "tf32" and not options.gpus:
        raise SweepError("--math-mode tf32 is a GPU mode (tensor cores); CPU cells compute strict fp32")
    if options.math_mode is not None and options.precision == "bf16":
        raise SweepError("--math-mode applies to fp32 cells; bf16 cells run in the bf16 math mode")


CPU_CELL_TIMEOUT_S = 900.0
# TensorFlow wheels JIT-compile their kernels from PTX on GPUs newer than their build: the first step of the first
# cell can take many minutes (the cache under ~/.nv/ComputeCache then serves later processes).
GPU_CELL_TIMEOUT_S = 2400.0


def default_cell_timeout(gpus: int) -> float:
    """Seconds before a cell's worker is killed when the user gives no --cell-timeout."""
    return GPU_CELL_TIMEOUT_S if gpus else CPU_CELL_TIMEOUT_S


def math_mode(options: SweepOptions, gpus: int, precision: str) -> str:
    """The math mode of a cell: bf16 with bf16; else the one asked for, or fp32 on CPU and TF32 on GPU."""
    if precision == "bf16":
        return "bf16"
    if not gpus:
        return "fp32"
    return options.math_mode or GPU_DEFAULT_MATH_MODE


def device_setups(options: SweepOptions) -> list[tuple[int, int]]:
    """(gpus, simulated devices) per setup; several GPUs also run one GPU, for scaling efficiency."""
    if options.simulate_devices:
        return [(options.gpus, options.simulate_devices)]  # on the CPU, or two logical devices on one GPU
    if options.gpus >= 2 and options.nodes == 1:
        return [(1, 0), (options.gpus, 0)]
    return [(options.gpus, 0)]


def _preset(options: SweepOptions) -> Preset:
    return QUICK if options.quick else (GPU_DEFAULT if options.gpus else CPU_DEFAULT)


def towers(variant: str) -> int:
    """Towers of a variant's widest layer: 2 for the paper's split (section 3.2), 1 for a single tower."""
    return max(getattr(layer, "towers", 1) for layer in get_variant(variant).layers)


def _check_model_parallel(options: SweepOptions, variants: list[str]) -> None:
    """Model parallelism puts one tower on each device, so it needs exactly as many devices as towers."""
    wrong = [v for v in variants if towers(v) > 1 and options.simulate_devices not in (0, towers(v))]
    if wrong:
        raise SweepError(
            f"{wrong[0]} has {towers(wrong[0])} towers and runs model-parallel on exactly {towers(wrong[0])} "
            f"devices (one tower each), not {options.simulate_devices}: use --simulate-devices {towers(wrong[0])}, "
            "or single-tower variants only (-v cifar100-single) for data-parallel on more"
        )


def model_parallel_note(options: SweepOptions) -> str | None:
    """What ``plan`` does with split variants when more GPUs than towers are asked for, in one line."""
    variants = options.variants or list(_preset(options).variants)
    split = [v for v in variants if towers(v) > 1]
    if not split or options.gpus <= max(map(towers, split)):
        return None
    single = "; single-tower variants run data-parallel on all of them" if len(split) < len(variants) else ""
    return (
        f"{', '.join(split)} run model-parallel on {max(map(towers, split))} of the {options.gpus} GPUs "
        f"(one tower per GPU){single}"
    )


def plan(options: SweepOptions) -> list[CellConfig]:
    """Every cell of the sweep, in the order they run (cheap variants and inference first).

    A split variant runs model-parallel with one tower per device: with more GPUs than towers it
    uses as many GPUs as it has towers (:func:`model_parallel_note`); simulated devices must match.
    """
    validate(options)
    preset = _preset(options)
    names = options.frameworks or [
        name for name in frameworks.default_names() if options.nodes == 1 or frameworks.get(name).multi_node
    ]
    variants = options.variants or [v for v in preset.variants if options.nodes == 1 or not get_variant(v).is_split]
    _check_model_parallel(options, variants)
    modes = options.modes or ["infer", "train"]
    batch_sizes = options.batch_sizes or list(preset.batch_sizes)
    steps = options.steps or preset.steps
    warmup = options.warmup or preset.warmup
    repeats = options.repeats or preset.repeats
    budget = preset.time_budget_s if options.time_budget_s is None else options.time_budget_s
    target = preset.target_precision if options.target_precision is None else options.target_precision
    cells = []
    # Repeats outermost: a cell's processes spread over the whole sweep, not back to back, so a slow
    # spell of the machine lands on one process of many cells, not on every process of one cell.
    for repeat, (gpus, simulated), variant, mode, batch, framework in product(
        range(repeats), device_setups(options), variants, modes, batch_sizes, names
    ):
        if get_variant(variant).is_split and (gpus >= 2 or simulated >= 2):
            impls = ["towers"]  # model-parallel: one tower per device is the towers formulation
            gpus = min(gpus, towers(variant))
        elif get_variant(variant).is_split:
            impls = options.split_impls or [frameworks.get(framework).default_split_impl]
        else:
            impls = ["grouped"]  # no towered layer: both formulations are the same model
        for impl in impls:
            cell = CellConfig(
                framework=framework,
                variant=variant,
                mode=mode,
                batch_size=batch,
                split_impl=impl,
                gpus=gpus,
                simulate_devices=simulated,
                steps=steps,
                warmup=warmup,
                repeat=repeat,
                seed=options.seed,
                precision=options.precision,
                compiled=options.compiled,
                channels_last=options.channels_last,
                xeon_launch=options.xeon_launch,
                cuda_graphs=options.cuda_graphs,
                time_budget_s=budget,
                target_precision=target if budget else 0.0,
                math_mode=math_mode(options, gpus, options.precision),
                nodes=options.nodes,
            )
            if reason := frameworks.get(framework).unsupported(cell):
                raise SweepError(reason)
            cells.extend(candidates(cell, options.native_bf16) if options.best else [cell])
    return list(dict.fromkeys(cells))  # --best with both formulations asked for would repeat cells
