"""What this machine can do, read once at the edge (the command line) and passed inward as data.

Plans depend on the host: bf16 is only worth trying where the CPU computes it natively, and the
default device count is the GPUs found. Nothing below the command line reads the machine for
these facts, so tests state them instead of inheriting them from whatever machine runs them.
``ALEXNET_BENCH_NATIVE_BF16=0|1`` overrides the CPU probe (the test suite sets it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX512-BF16 / AMX; Arm's bf16


def native_bf16(cpuinfo: str | None = None, cpuinfo_path: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bf16 natively; without it both frameworks emulate bf16 far below fp32.

    ``cpuinfo``: the text of ``/proc/cpuinfo``; without it the override, else the file at ``cpuinfo_path``.
    """
    if cpuinfo is None:
        override = os.environ.get("ALEXNET_BENCH_NATIVE_BF16")
        if override in ("0", "1"):
            return override == "1"
        try:
            cpuinfo = cpuinfo_path.read_text()
        except OSError:
            return False
    return bool(set(cpuinfo.split()) & NATIVE_BF16_FLAGS)


@dataclass(frozen=True)
class Host:
    native_bf16: bool = False
    gpus: tuple[str, ...] = ()  # names of the GPUs this process may use, in CUDA's order
    gpu_uuids: tuple[str, ...] = ()  # their NVML UUIDs, same order: what each worker's CUDA_VISIBLE_DEVICES names
    gpu_probe: str | None = None  # why no GPU was found, when none was

    @classmethod
    def detect(cls) -> Host:
        from benchmarks.measure.memory import nvml_devices

        devices, why_none = nvml_devices()
        return cls(
            native_bf16=native_bf16(),
            gpus=tuple(d["name"] for d in devices),
            gpu_uuids=tuple(d["uuid"] for d in devices),
            gpu_probe=why_none,
        )
