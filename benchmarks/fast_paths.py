"""The fast paths ``bench.py run --best`` tries, one at a time against each framework's baseline.

Each candidate changes one thing, so its ratio to the baseline says what that one thing is
worth on this device: the other split formulation, then each fast path the framework's adapter
offers (``channels_last``, ``compiled``, ``bf16``, on CPUs PyTorch's ``xeon_launch``, on one GPU PyTorch's
``cuda_graphs``).
cudnn.benchmark is on for every PyTorch GPU cell. On a CPU without native bf16 (no
AVX512-BF16/AMX) the frameworks emulate bf16 at a small fraction of fp32 speed: one such cell
can take longer than the whole sweep, so bf16 is only tried on GPUs and where the host says it
is native.
"""

from __future__ import annotations

from dataclasses import replace

from benchmarks import frameworks
from benchmarks.cell import FAST_PATHS, CellConfig
from implementations.variants import SPLIT_IMPLS, get_variant


def candidates(baseline: CellConfig, native_bf16: bool) -> list[CellConfig]:
    """The baseline first, then one variation per fast path that applies to it.

    ``native_bf16`` is the host's (see ``benchmarks.host``); GPUs always compute bf16 natively.
    """
    framework = frameworks.get(baseline.framework)
    found = [baseline]
    if get_variant(baseline.variant).is_split and baseline.parallel == "none":
        other = next(impl for impl in SPLIT_IMPLS if impl != baseline.split_impl)
        found.append(replace(baseline, split_impl=other))
    for path in FAST_PATHS:
        if path.name == "bf16" and not (native_bf16 or baseline.gpus > 0):
            continue
        if framework.fast_path_applies(path.name, baseline):
            found.append(replace(baseline, **path.change))
    return found
