"""The fast paths ``bench.py run --best`` tries, one at a time against each framework's baseline.

Each candidate changes one thing, so its ratio to the baseline says what that one thing is
worth on this device: the other split formulation; PyTorch channels_last, torch.compile, bf16
autocast; Keras XLA and mixed bf16 (Keras on JAX or torch: the formulation and bf16 only).
cudnn.benchmark is on for every PyTorch GPU cell. On a CPU without native bf16 (no
AVX512-BF16/AMX) the frameworks emulate bf16 at a small fraction of fp32 speed: one such cell
can take longer than the whole sweep, so bf16 is not tried there.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from benchmarks.cell import CellConfig
from implementations.variants import SPLIT_IMPLS, get_variant


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively; without it both frameworks emulate bf16 far below fp32."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def candidates(baseline: CellConfig, bf16_ok: bool | None = None) -> list[CellConfig]:
    """The baseline first, then one variation per fast path that applies to it.

    bf16 is tried on GPUs and on CPUs with native bf16 instructions only (``bf16_ok`` overrides).
    """
    if bf16_ok is None:
        bf16_ok = baseline.gpus > 0 or native_bf16()
    found = [baseline]
    if get_variant(baseline.variant).is_split and baseline.parallel == "none":
        other = next(impl for impl in SPLIT_IMPLS if impl != baseline.split_impl)
        found.append(replace(baseline, split_impl=other))
    if baseline.framework == "torch":
        found.append(replace(baseline, channels_last=True))
    if baseline.framework == "torch" or (baseline.framework == "keras" and baseline.parallel != "model"):
        # XLA compiles a step for one device: Keras refuses it for towers on different devices.
        # Keras on JAX is always jit-compiled, and on torch it runs eagerly (its normal use).
        found.append(replace(baseline, compiled=True))
    if bf16_ok:
        found.append(replace(baseline, precision="bf16"))
    return found


def describe(cell: CellConfig) -> str:
    """How a candidate differs from the plain model, for tables."""
    impl = cell.split_impl if get_variant(cell.variant).is_split else ""
    return "+".join(filter(None, [impl, cell.fast_paths()]))
