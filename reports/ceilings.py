"""The device's ceiling: the best dense-matmul rate any framework measured on the same device kind.

Every cell measures a large matmul in its own framework and precision (``benchmarks.measure.ceiling``).
Frameworks reach different fractions of the hardware with their own matmul (on a 2-core CPU
TensorFlow's can be twice PyTorch's), so a framework's own figure flatters the slower one. The
limit a network is held to is the device's: the highest rate measured on it by either framework,
for the same machine, device kind (CPU or GPU), precision and math mode: a TF32 matmul is not held to
a strict fp32 one, nor the other way round.
"""

from __future__ import annotations

import pandas as pd

DEVICE_KEYS = ["environment", "device_kind", "precision", "math_mode"]


def device_kind(frame: pd.DataFrame) -> pd.Series:
    """'gpu' for rows that ran on GPUs, 'cpu' otherwise (simulated devices share the CPU)."""
    return frame["gpus"].fillna(0).astype(int).gt(0).map({True: "gpu", False: "cpu"})


def device_ceiling(frame: pd.DataFrame) -> pd.Series:
    """Per row: the highest ``ceiling_gflops`` of rows of the same environment, device kind, precision, math mode."""
    if frame.empty or "ceiling_gflops" not in frame:
        return pd.Series(dtype=float, index=frame.index)
    precision = frame["precision"].fillna("fp32")
    implied = precision.map(lambda p: "bf16" if p == "bf16" else "fp32")  # rows written before the math mode
    math_mode = frame["math_mode"].fillna(implied) if "math_mode" in frame else implied
    keyed = frame.assign(device_kind=device_kind(frame), precision=precision, math_mode=math_mode)
    return keyed.groupby(DEVICE_KEYS, dropna=False)["ceiling_gflops"].transform("max")


def per_device_gflops(frame: pd.DataFrame) -> pd.Series:
    """Achieved GFLOP/s per device that computes: a multi-GPU cell is held to one GPU's ceiling; simulated devices
    share the CPU or the one GPU they run on, so a simulated cell is held to that device's whole ceiling."""
    return frame["achieved_gflops"] / frame["gpus"].fillna(0).clip(lower=1)
