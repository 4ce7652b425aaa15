"""Fakes for the GPU paths where no GPU exists: an NVML module with two devices, one on a machine without an
NVIDIA driver, and recording modules."""

from __future__ import annotations

import types

UUIDS = ("GPU-aaaaaaaa-0000", "GPU-bbbbbbbb-1111")
NAMES = ("Fake GPU A", "Fake GPU B")


def fake_nvml(used_bytes: tuple[int, int] = (1 << 30, 2 << 30), energy_step_mj: tuple[int, int] = (500, 700)):
    """A ``pynvml`` with two devices: fixed memory in use; each energy read advances the counter by a fixed step."""
    module = types.ModuleType("pynvml")
    energy = [0, 0]

    def energy_read(index: int) -> int:
        energy[index] += energy_step_mj[index]
        return energy[index]

    module.nvmlInit = lambda: None
    module.nvmlShutdown = lambda: None
    module.nvmlDeviceGetCount = lambda: 2
    module.nvmlDeviceGetHandleByIndex = lambda i: i
    module.nvmlDeviceGetUUID = lambda h: UUIDS[h].encode()
    module.nvmlDeviceGetName = lambda h: NAMES[h]
    module.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=used_bytes[h], total=80 << 30)
    module.nvmlDeviceGetTotalEnergyConsumption = energy_read
    return module


class NVMLError(Exception):
    """What ``pynvml`` raises (its NVMLError_LibraryNotFound says the message below)."""


def absent_nvml(message: str = "NVML Shared Library Not Found"):
    """A ``pynvml`` on a machine without an NVIDIA driver: installed (a dependency) but every call fails."""
    module = types.ModuleType("pynvml")

    def fail(*args):
        raise NVMLError(message)

    for name in ("nvmlInit", "nvmlShutdown", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex"):
        setattr(module, name, fail)
    module.NVMLError = NVMLError
    return module


class Recorder:
    """Any attribute is a function that records its name and arguments in ``calls``."""

    def __init__(self, returns: dict | None = None) -> None:
        self.calls: list[tuple] = []
        self._returns = returns or {}

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def record(*args, **kwargs):
            self.calls.append((name, *args))
            value = self._returns.get(name)
            return value(*args) if callable(value) else value

        return record
