"""check-model: the suite's own builders pass; the classic porting mistakes fail at the right layer."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from implementations.check_model import CheckModelError, check_model, load_factory
from implementations.variants import get_variant

ROOT = Path(__file__).resolve().parent.parent
RTOL = 1e-4

SUITE_PORTS = {
    "suite_torch.py": """
        from implementations.torch_alexnet import build_torch_model
        from implementations.variants import get_variant

        def build():
            return build_torch_model(get_variant("cifar100-split"), "grouped")
    """,
    "suite_keras.py": """
        from implementations.keras_alexnet import build_keras_model
        from implementations.variants import get_variant

        def build():
            return build_keras_model(get_variant("cifar100-single"), "grouped")
    """,
}

# The most common PyTorch port: nn.LocalResponseNorm given the paper's alpha=1e-4, which it divides by n=5.
TORCH_DIVIDING_LRN = """
    from torch import nn

    def conv(cin, cout, kernel, padding, groups=1):
        return [nn.Conv2d(cin, cout, kernel, 1, padding, groups=groups), nn.ReLU()]

    def build():
        lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
        return nn.Sequential(
            *conv(3, 96, 5, 2), lrn(), nn.MaxPool2d(3, 2),
            *conv(96, 256, 5, 2), lrn(), nn.MaxPool2d(3, 2),
            *conv(256, 384, 3, 1), *conv(384, 384, 3, 1), *conv(384, 256, 3, 1), nn.MaxPool2d(3, 2),
            nn.Flatten(),
            nn.Linear(2304, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, 100),
        )
"""

# The widely copied Keras tutorial's kind of AlexNet, at CIFAR-100 shapes: no LRN, 2x2 pooling, 11x11 conv2.
KERAS_TUTORIAL = """
    import keras
    from keras import layers

    def build():
        return keras.Sequential([
            keras.Input((32, 32, 3)),
            layers.Conv2D(96, 5, padding="same", activation="relu"), layers.MaxPooling2D(2),
            layers.Conv2D(256, 11, padding="same", activation="relu"), layers.MaxPooling2D(2),
            layers.Conv2D(384, 3, padding="same", activation="relu"),
            layers.Conv2D(384, 3, padding="same", activation="relu"),
            layers.Conv2D(256, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(4096, activation="relu"), layers.Dropout(0.4),
            layers.Dense(4096, activation="relu"), layers.Dropout(0.4),
            layers.Dense(100),
        ])
"""


def write_port(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def test_the_suites_pytorch_builder_passes_by_module_path(tmp_path, monkeypatch):
    write_port(tmp_path, "suite_torch.py", SUITE_PORTS["suite_torch.py"])
    monkeypatch.syspath_prepend(str(tmp_path))
    report = check_model("suite_torch:build", get_variant("cifar100-split"), rtol=RTOL)
    assert report.framework == "torch" and report.compared
    assert report.ok, [c.problems for c in report.layers]
    compared = [c for c in report.layers if c.rel_diff is not None]
    assert {c.name for c in compared} >= {"conv1", "lrn1", "conv2", "lrn2", "fc6", "fc8"}
    assert all(c.rel_diff <= RTOL for c in compared)


def test_the_suites_keras_builder_passes_by_file_path(tmp_path):
    path = write_port(tmp_path, "suite_keras.py", SUITE_PORTS["suite_keras.py"])
    report = check_model(f"{path}:build", get_variant("cifar100-single"), rtol=RTOL)
    assert report.framework == "keras" and report.ok, [c.problems for c in report.layers]
    assert report.layers[-1].rel_diff is not None and report.layers[-1].rel_diff <= RTOL


def test_a_dividing_lrn_given_the_papers_alpha_fails_at_the_first_lrn(tmp_path):
    path = write_port(tmp_path, "port_lrn.py", TORCH_DIVIDING_LRN)
    report = check_model(f"{path}:build", get_variant("cifar100-single"), rtol=RTOL)
    assert report.compared and not report.ok
    first = report.first_failing
    assert first.name == "lrn1"
    assert "alpha divided by n" in first.problems[0] and "alpha=0.0005" in first.problems[0]
    conv1 = report.layers[0]
    assert conv1.ok and conv1.rel_diff <= RTOL  # the weights went in right: only the LRN differs
    assert first.rel_diff > RTOL and any("outputs differ" in p for p in first.problems)


def test_the_tutorial_style_keras_port_fails_at_its_first_differing_layer_with_the_reason(tmp_path):
    path = write_port(tmp_path, "port_tutorial.py", KERAS_TUTORIAL)
    report = check_model(f"{path}:build", get_variant("cifar100-single"), rtol=RTOL)
    assert not report.ok and not report.compared
    names = [c.name for c in report.layers if not c.ok]
    assert names[0] == "lrn1" and "no LRN here" in report.first_failing.problems[0]
    problems = {c.name: "; ".join(c.problems) for c in report.layers}
    assert "pooling 2x2/2, the spec's is 3x3/2" in problems["pool1"]
    assert "kernel 11x11, the spec's is 5x5" in problems["conv2"]
    assert "dropout rate 0.4" in problems["dropout6"]
    assert "conv2 holds" in report.not_compared_because


def test_targets_that_cannot_be_loaded_are_one_line_errors(tmp_path):
    broken = write_port(tmp_path, "broken.py", "import not_a_module_anywhere\n")
    for target, message in (
        ("no-colon", "expected PATH.py:FUNCTION"),
        (f"{tmp_path}/missing.py:build", "no such file"),
        (f"{broken}:build", "cannot import"),
        ("json:build", "has no function 'build'"),
    ):
        with pytest.raises(CheckModelError, match=message):
            load_factory(target)


def bench(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench.py"), *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_cli_a_path_that_does_not_import_is_one_line_on_stderr_and_exit_two(tmp_path):
    broken = write_port(tmp_path, "broken.py", "import not_a_module_anywhere\n")
    done = bench("check-model", f"{broken}:build", "--against", "cifar100-split")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "cannot import" in done.stderr and "not_a_module_anywhere" in done.stderr


def test_cli_prints_the_table_and_exits_one_at_the_first_differing_layer(tmp_path):
    path = write_port(tmp_path, "port_lrn.py", TORCH_DIVIDING_LRN)
    done = bench("check-model", f"{path}:build", "--against", "cifar100-single")
    assert done.returncode == 1, done.stderr
    assert "spec layer" in done.stdout and "your layer" in done.stdout
    assert "FAIL at lrn1: LRN constants: alpha divided by n" in " ".join(done.stdout.split())
