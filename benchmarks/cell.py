"""One benchmark cell: framework x variant x mode x batch size x device setup, as plain data.

A cell is what one worker process measures. Its config travels to the worker as JSON and comes
back inside the result row, so every figure carries the exact configuration that produced it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import ClassVar

from benchmarks.results import job_key, known_fields
from implementations.variants import get_variant

MODES = ("train", "infer")
# Fields added later, left out of ``key()`` when unset: keys of older rows still match.
KEY_OPTIONAL = ("time_budget_s", "target_precision", "xeon_launch", "cuda_graphs")
# How fp32 arithmetic is done on a GPU. Strict fp32 is torch's matmul default; TensorFlow, JAX and torch's cuDNN
# convolutions use TF32 by default on Ampere and newer GPUs, which keeps 10 mantissa bits. A cell states its mode and
# every framework's adapter sets it the same way (see each ``*_cell.set_math_mode``); "bf16" goes with bf16 precision.
MATH_MODES = ("fp32", "tf32", "bf16")
GPU_DEFAULT_MATH_MODE = "tf32"  # what TensorFlow and JAX users get without asking; torch is set to match
# Where a multi-node cell meets its peers (benchmarks.multinode), not what it measures: never part of ``key()``,
# so every node of one cell has the same key, and the key is the one the nodes compare at the rendezvous.
PLACEMENT = ("node_rank", "rendezvous", "rdzv_id", "join_timeout_s")

# The learning rate of a throughput cell's training step (constant: the rate does not change what is timed).
LEARNING_RATE = 0.01


BASELINE_FAST_PATHS = ("fp32", "TF32")  # the plain model in strict fp32 or in TF32: no fast path taken


@dataclass(frozen=True)
class FastPath:
    """One fast path: the cell fields it sets, the option that asks for it, and how labels name it."""

    name: str  # what adapters list (``Framework.fast_paths``)
    option: str  # how users ask for it
    change: dict  # the cell's fields, from the plain fp32 model (``--best`` applies it to a baseline)
    label: str  # its part of a configuration's label, e.g. "bf16+compiled"

    def used_by(self, cell: object) -> bool:
        """Whether ``cell`` (a CellConfig, or anything with its fields) takes this fast path."""
        return all(getattr(cell, name) == value for name, value in self.change.items() if name != "math_mode")


# Every fast path, in the order ``--best`` tries them. A fast path is a CellConfig field (or two, for bf16) and one
# entry here: the matrix, ``--best``, the adapters' refusals and the labels all read this list.
FAST_PATHS = (
    FastPath("channels_last", "--channels-last", {"channels_last": True}, "channels_last"),
    FastPath("compiled", "--compile", {"compiled": True}, "compiled"),
    FastPath("bf16", "--precision bf16", {"precision": "bf16", "math_mode": "bf16"}, "bf16"),
    FastPath("xeon_launch", "--xeon-launch", {"xeon_launch": True}, "xeon-launch"),
    FastPath("cuda_graphs", "--cuda-graphs", {"cuda_graphs": True}, "cuda-graphs"),
)
# How a configuration's label reads.
LABEL_ORDER = ("bf16", "TF32", "compiled", "cuda-graphs", "channels_last", "xeon-launch")


def fast_path(name: str) -> FastPath:
    return next(path for path in FAST_PATHS if path.name == name)


def math_mode_label(math_mode: str) -> str:
    """How reports name a math mode: 'TF32' where it was used, 'fp32' (strict) and 'bf16' as they are."""
    return "TF32" if math_mode == "tf32" else math_mode


def implied_math_mode(precision: str) -> str:
    """The math mode of a cell that names none (rows written before the field existed)."""
    return "bf16" if precision == "bf16" else "fp32"


def fast_path_label(
    precision: str = "fp32",
    compiled: bool = False,
    channels_last: bool = False,
    math_mode: str = "",
    xeon_launch: bool = False,
    cuda_graphs: bool = False,
) -> str:
    """The options beyond the plain fp32 model, e.g. 'bf16+compiled' ('fp32' when none; 'TF32' under TF32)."""
    fields = {
        "precision": precision,
        "compiled": compiled,
        "channels_last": channels_last,
        "xeon_launch": xeon_launch,
        "cuda_graphs": cuda_graphs,
    }
    parts = [path.label for path in FAST_PATHS if path.used_by(SimpleNamespace(**fields))]
    parts += ["TF32"] if math_mode == "tf32" else []
    return "+".join(sorted(parts, key=LABEL_ORDER.index)) or "fp32"


@dataclass(frozen=True)
class CellConfig:
    worker_flag: ClassVar[str] = "--config"  # how the worker is told it measures a cell

    framework: str
    variant: str
    mode: str
    batch_size: int  # global batch per step; data-parallel cells split it across devices
    split_impl: str = "grouped"
    gpus: int = 0  # 0 = CPU
    simulate_devices: int = 0  # >= 2: multi-device code paths on CPU (results labelled simulated)
    steps: int = 10
    warmup: int = 3
    repeat: int = 0
    seed: int = 0
    # Fast paths (see benchmarks.fast_paths); the defaults are the plain fp32 eager models.
    precision: str = "fp32"  # or "bf16": PyTorch autocast, Keras mixed_bfloat16
    compiled: bool = False  # PyTorch torch.compile, Keras XLA (jit_compile)
    channels_last: bool = False  # PyTorch memory format (Keras is channels-last already)
    xeon_launch: bool = False  # PyTorch's CPU launcher: core affinity, OpenMP threads, tcmalloc/jemalloc if found
    cuda_graphs: bool = False  # PyTorch on one GPU: the whole step captured once as a CUDA graph, then replayed
    # Timing by budget (benchmarks.measure.timing.time_by_budget): 0 = exactly ``steps`` steps; else ``steps`` is
    # the minimum, and steps go on until the median is within ``target_precision`` or the budget is spent.
    time_budget_s: float = 0.0
    target_precision: float = 0.0
    # fp32 (strict), tf32 or bf16; "" (rows written before the field existed) is read as the mode the precision
    # implies. The sweep's options are checked once, where the cells are planned (benchmarks.matrix).
    math_mode: str = ""
    # Several machines (benchmarks.multinode): ``gpus`` is per node; data-parallel over all of them.
    nodes: int = 1
    node_rank: int = 0
    rendezvous: str = ""  # HOST:PORT of the first node
    rdzv_id: str = ""
    join_timeout_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.math_mode:  # one form from here on: the mode the cell runs in
            object.__setattr__(self, "math_mode", implied_math_mode(self.precision))

    @property
    def devices_per_node(self) -> int:
        """Devices (one process each when data-parallel) on each node (1 for CPU)."""
        return max(self.gpus, self.simulate_devices, 1)

    @property
    def devices(self) -> int:
        """How many devices the cell spans, over all its nodes (1 for CPU on one machine)."""
        return self.devices_per_node * self.nodes

    @property
    def parallel(self) -> str:
        """'none' on one device; with several, the split runs model-parallel, single data-parallel."""
        if self.devices < 2:
            return "none"
        return "model" if get_variant(self.variant).is_split else "data"

    @property
    def physical_devices(self) -> int:
        """Devices that really compute: the GPUs, or the one CPU (simulated devices share them)."""
        return max(self.gpus, 1)

    @property
    def device_setup(self) -> str:
        if self.simulate_devices >= 2:
            where = f"on {self.gpus} gpu" if self.gpus else "(cpu)"
            return f"{self.simulate_devices} simulated {where}"
        one = f"{self.gpus} gpu" if self.gpus else "cpu"
        return f"{self.nodes} nodes x {one}" if self.nodes > 1 else one

    def key(self) -> str:
        """Stable identity of the cell, used by --resume; where a multi-node cell meets its peers is not part of it."""
        fields_ = {
            k: v
            for k, v in asdict(self).items()
            if not (k in KEY_OPTIONAL and not v) and k not in PLACEMENT and not (k == "nodes" and v == 1)
        }
        if self.math_mode == implied_math_mode(self.precision):
            fields_.pop("math_mode")  # what cells before the field ran: old keys still match
        return job_key(fields_)  # fields at their defaults left out: old keys still match

    def row_fields(self, framework_environment: dict | None = None) -> dict:
        """What a result row records of this cell besides its figures."""
        return {
            "cell": asdict(self),
            "device_setup": self.device_setup,
            "devices": self.devices,
            "parallel": self.parallel,
            "simulated": self.simulate_devices >= 2,
        }

    def label(self) -> str:
        impl = f"/{self.split_impl}" if get_variant(self.variant).is_split and self.parallel == "none" else ""
        parallel = f" {self.parallel}-parallel" if self.parallel != "none" else ""
        setup = f"{self.device_setup}{parallel}"
        fast = f" [{self.fast_paths()}]" if self.fast_paths() != "fp32" else ""
        return f"{self.framework} {self.variant}{impl}{fast} {self.mode} bs={self.batch_size} {setup} #{self.repeat}"

    def fast_paths(self) -> str:
        return fast_path_label(
            self.precision, self.compiled, self.channels_last, self.math_mode, self.xeon_launch, self.cuda_graphs
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def launch_cell(self) -> CellConfig:
        """A cell is launched by its own settings (see ``benchmarks.runner.WorkerJob``)."""
        return self

    @classmethod
    def from_dict(cls, data: dict) -> CellConfig:
        return cls(**known_fields(cls, data, "cell"))


@dataclass
class PreparedCell:
    """What a framework hands the worker: a step to time, how to wait for the device, and extras.

    ``step`` runs one training step (forward, loss, backward, update) or one inference forward
    pass on data already on the device.
    """

    step: object  # Callable[[], object]
    sync: object  # Callable[[], None]
    images_per_step: int
    environment: dict
    reset_peak_memory: object = None  # Callable[[], None] | None
    framework_memory: object = None  # Callable[[], dict] | None
    is_reporter: bool = True  # False on non-zero ranks of a data-parallel launch
    ceiling: object = None  # Callable[[], dict] | None: the device's dense matmul rate, see measure.ceiling
    close: object = None  # Callable[[], None] | None: run once measuring is over, whatever happened
    # measure.timing.StopAgreement | None: how the ranks of a data-parallel launch stop timing at the same step
    # (None in one process).
    stop_agreement: object = None
