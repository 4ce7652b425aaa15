"""A test-only copy of a checkout whose PyTorch step does real extra work: the "new" side of an A/B that must be
flagged (``tests/test_ab_alone.py``), and of the A/B pairs of the README's noise table.

The copy holds the checkout's files (tracked, and new ones git does not ignore). Its PyTorch adapter wraps the
step: the first call times one more step and a 128x128 matmul, and every call after it runs as many of those
matmuls as make about ``extra`` of the step's time (0.10: about 10% more work), on the step's own threads. It is
computation, not a sleep: a busy machine slows it as it slows the step.

    python -m tests.slower_tree SOURCE TARGET --extra 0.10
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

ADAPTER = Path("benchmarks/frameworks/pytorch_cell.py")
HOOK = "        step=step,\n        sync=sync,\n"
EXTRA_WORK = '''

def _with_extra_work(step, extra):
    """Test-only (tests/slower_tree.py): the step, plus matmuls worth about ``extra`` of its time."""
    import time

    import torch

    a, b = torch.randn(128, 128), torch.randn(128, 128)
    repeats = []

    def slower():
        out = step()
        if not repeats:  # calibrate once, on a warm-up step
            started = time.perf_counter()
            step()
            step_s = time.perf_counter() - started
            torch.mm(a, b)
            started = time.perf_counter()
            for _ in range(20):
                torch.mm(a, b)
            mm_s = (time.perf_counter() - started) / 20
            repeats.append(max(1, round(extra * step_s / mm_s)))
        for _ in range(repeats[0]):
            torch.mm(a, b)
        return out

    return slower
'''


def tree_files(source: Path) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=source,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (source / name).is_file()]


def make_slower_tree(source: Path, target: Path, extra: float) -> Path:
    """Copy ``source``'s files to ``target`` and give its PyTorch step about ``extra`` more work."""
    for name in tree_files(source):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target / name)
    adapter = target / ADAPTER
    text = adapter.read_text(encoding="utf-8")
    assert text.count(HOOK) == 1, f"{ADAPTER} changed: the test patch no longer finds where the step is handed over"
    text = text.replace(HOOK, HOOK.replace("step=step,", f"step=_with_extra_work(step, {extra!r}),")) + EXTRA_WORK
    adapter.write_text(text, encoding="utf-8")
    return target


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--extra", type=float, default=0.10)
    args = parser.parse_args()
    args.target.mkdir(parents=True, exist_ok=True)
    print(make_slower_tree(args.source.resolve(), args.target, args.extra))
