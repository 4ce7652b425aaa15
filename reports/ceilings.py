"""The device's ceiling: the best dense-matmul rate any framework measured on the same device kind.

Every cell measures a large matmul in its own framework and precision (``benchmarks.measure.ceiling``).
Frameworks reach different fractions of the hardware with their own matmul (on a 2-core CPU
TensorFlow's can be twice PyTorch's), so a framework's own figure flatters the slower one. The
limit a network is held to is the device's: the highest rate measured on it by either framework,
for the same machine, device kind (CPU or GPU) and precision.
"""

from __future__ import annotations

import pandas as pd

DEVICE_KEYS = ["environment", "device_kind", "precision"]


def device_kind(frame: pd.DataFrame) -> pd.Series:
    """'gpu' for rows that ran on GPUs, 'cpu' otherwise (simulated devices share the CPU)."""
    return frame["gpus"].fillna(0).astype(int).gt(0).map({True: "gpu", False: "cpu"})


def device_ceiling(frame: pd.DataFrame) -> pd.Series:
    """Per row: the highest ``ceiling_gflops`` among rows of the same environment, device kind and precision."""
    if frame.empty or "ceiling_gflops" not in frame:
        return pd.Series(dtype=float, index=frame.index)
    keyed = frame.assign(device_kind=device_kind(frame), precision=frame["precision"].fillna("fp32"))
    return keyed.groupby(DEVICE_KEYS, dropna=False)["ceiling_gflops"].transform("max")


def per_device_gflops(frame: pd.DataFrame) -> pd.Series:
    """Achieved GFLOP/s per device: a multi-device cell is held to one device's ceiling."""
    return frame["achieved_gflops"] / frame["devices"].clip(lower=1)
