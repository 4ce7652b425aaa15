"""A plain NumPy LRN, written from the paper's formula (section 3.3), as the tests' reference."""

import numpy as np


def paper_lrn(a: np.ndarray, size=5, k=2.0, alpha=1e-4, beta=0.75, groups=1, channel_axis=1) -> np.ndarray:
    """b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta within each group."""
    a = np.moveaxis(a.astype(np.float64), channel_axis, -1)
    channels = a.shape[-1]
    per_group = channels // groups
    out = np.empty_like(a)
    for i in range(channels):
        start = (i // per_group) * per_group
        lo, hi = max(start, i - size // 2), min(start + per_group - 1, i + size // 2)
        total = np.sum(a[..., lo : hi + 1] ** 2, axis=-1)
        out[..., i] = a[..., i] / (k + alpha * total) ** beta
    return np.moveaxis(out, -1, channel_axis)
