"""Memory figures, each saying what it measures.

- NVML (nvidia-ml-py): device memory in use on each GPU the worker can see, sampled by a
  background thread during the timed steps. NVML numbers devices in PCI bus order and ignores
  CUDA_VISIBLE_DEVICES, so visible devices are mapped by UUID (the runner names each cell's GPUs
  by UUID) or by index (with CUDA_DEVICE_ORDER=PCI_BUS_ID, which the runner sets). Only those
  devices are sampled: a cell's figures never include another GPU of the machine.
- Energy: NVML's total-energy counter (millijoules since the driver loaded, Volta and newer)
  read when sampling starts and stops; the difference is the energy the cell's GPUs used over the
  timed steps (the whole device, all processes on it).
- Peak resident set size of the worker process: the CPU figure. It includes the framework runtime.
"""

from __future__ import annotations

import os
import resource
import sys
import threading


def peak_rss_bytes() -> int:
    """Peak RSS of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


def _visible_nvml_indices(count: int, uuids: list[str]) -> list[int]:
    """NVML indices of the GPUs CUDA_VISIBLE_DEVICES exposes, in CUDA's order."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(count))
    indices = []
    for entry in (e.strip() for e in visible.split(",") if e.strip()):
        if entry.isdigit():
            if int(entry) >= count:
                break  # CUDA stops at the first invalid entry
            indices.append(int(entry))
        else:
            matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(entry)]
            if not matches:
                break
            indices.append(matches[0])
    return indices


class NvmlSampler:
    """Samples memory used on the visible GPUs every ``interval_s`` until stopped; records peaks.

    Without NVML (no driver, no GPU) it is inert and reports ``available: False`` with the reason.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.devices: list[dict] = []
        self.error: str | None = None
        self._handles: list = []

    def __enter__(self) -> NvmlSampler:
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            all_handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            uuids = [_text(pynvml.nvmlDeviceGetUUID(h)) for h in all_handles]
            for cuda_index, nvml_index in enumerate(_visible_nvml_indices(count, uuids)):
                handle = all_handles[nvml_index]
                used = pynvml.nvmlDeviceGetMemoryInfo(handle).used
                self._handles.append(handle)
                self.devices.append(
                    {
                        "cuda_index": cuda_index,
                        "nvml_index": nvml_index,
                        "uuid": uuids[nvml_index],
                        "name": _text(pynvml.nvmlDeviceGetName(handle)),
                        "used_before_bytes": used,
                        "peak_used_bytes": used,
                        "energy_start_mj": _energy_mj(pynvml, handle),
                    }
                )
            if not self.devices:
                self.error = _none_visible(count)
        except Exception as error:  # noqa: BLE001 - any NVML failure means "no GPU figures", said below
            self.error = f"NVML unavailable: {error}"
            return self
        if self._handles:
            self._thread = threading.Thread(target=self._run, name="nvml-sampler", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        import pynvml

        while not self._stop.is_set():
            for device, handle in zip(self.devices, self._handles, strict=True):
                used = pynvml.nvmlDeviceGetMemoryInfo(handle).used
                device["peak_used_bytes"] = max(device["peak_used_bytes"], used)
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._handles:
            import pynvml

            for device, handle in zip(self.devices, self._handles, strict=True):
                start, end = device.pop("energy_start_mj"), _energy_mj(pynvml, handle)
                device["energy_j"] = (end - start) / 1000 if start is not None and end is not None else None
            pynvml.nvmlShutdown()

    def report(self) -> dict:
        return {
            "what": "device memory in use (NVML, whole device, all processes), peak during timed steps; "
            "energy_j: NVML total-energy counter over the timed steps",
            "available": bool(self.devices),
            "error": self.error,
            "devices": self.devices,
        }

    def energy_j(self) -> float | None:
        """Joules all sampled devices used while sampling; None without GPUs or where a device has no counter."""
        energies = [device.get("energy_j") for device in self.devices]
        if not energies or any(e is None for e in energies):
            return None
        return float(sum(energies))


def _none_visible(count: int) -> str:
    """Why NVML gave no device to sample although it works: none in the machine, or all hidden from this process."""
    if not count:
        return "NVML found no GPU"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f"CUDA_VISIBLE_DEVICES={visible!r} hides all {count} GPUs of this machine"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _energy_mj(pynvml: object, handle: object) -> int | None:
    """NVML's total-energy counter in millijoules; None where the device has none (before Volta)."""
    try:
        return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and kin: no energy figure, reported as None
        return None


def nvml_devices() -> tuple[list[dict], str | None]:
    """The GPUs visible to this process, via NVML, in CUDA's order: name and UUID each; (devices, reason if none)."""
    with NvmlSampler() as sampler:
        pass
    return [{"name": d["name"], "uuid": d["uuid"]} for d in sampler.devices], sampler.error


def nvml_gpus() -> tuple[list[str], str | None]:
    """Names of the GPUs visible to this process, via NVML; (names, reason if none)."""
    devices, error = nvml_devices()
    return [d["name"] for d in devices], error
