"""A test-only copy of a checkout whose PyTorch step does real extra work: the "new" side of an A/B that must be
flagged (``tests/test_ab_alone.py``), and of the A/B pairs of the README's noise table.

The copy holds the checkout's files (tracked, and new ones git does not ignore). Its PyTorch adapter wraps the
step: every call also runs a fixed number of 256x256 matmuls, as many as make ``extra`` of the step's FLOPs
(the spec's forward FLOPs times the batch, three times that for training; 0.10: 10% more FLOPs), on the step's
own threads. The count is the same in every process, so the extra work is too; what it costs in time depends on
how fast this CPU runs small matmuls against convolutions, so measure it rather than assume 10%. It is
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

def _with_extra_work(step, config, arch, extra):
    """Test-only (tests/slower_tree.py): the step, plus 256x256 matmuls worth ``extra`` of its FLOPs."""
    import torch

    from implementations.spec import forward_flops

    passes = 3 if config.mode == "train" else 1  # a backward pass costs about twice the forward
    step_flops = forward_flops(arch) * config.batch_size * passes
    count = max(1, round(extra * step_flops / (2 * 256**3)))
    a, b = torch.randn(256, 256), torch.randn(256, 256)

    def slower():
        out = step()
        for _ in range(count):
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
    wrapped = HOOK.replace("step=step,", f"step=_with_extra_work(step, config, arch, {extra!r}),")
    text = text.replace(HOOK, wrapped) + EXTRA_WORK
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
