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


# The paper's two towers written as separate per-tower modules (CIFAR-100 shapes), joined with torch.cat.
# build_layer_major runs each spec layer for both towers before the next; build_tower_major runs each tower
# as its own nn.Sequential, one after the other. The other factories are the same port with one mistake.
TORCH_TOWERS = """
    import torch
    from torch import nn
    from torch.nn import functional as F

    def pair(make):
        return nn.ModuleList([make(), make()])

    def lrn(alpha=5e-4):  # nn.LocalResponseNorm divides alpha by size: 5e-4 is the paper's 1e-4
        return nn.LocalResponseNorm(5, alpha=alpha, beta=0.75, k=2.0)

    class LayerMajor(nn.Module):
        def __init__(self, alpha=5e-4, lrn1_across_towers=False):
            super().__init__()
            self.lrn1_across_towers = lrn1_across_towers
            self.conv1 = pair(lambda: nn.Conv2d(3, 48, 5, padding=2))
            self.lrn1 = pair(lambda: lrn(alpha))
            self.conv2 = pair(lambda: nn.Conv2d(48, 128, 5, padding=2))
            self.lrn2 = pair(lambda: lrn(alpha))
            self.pool = nn.MaxPool2d(3, 2)  # one module, called once per tower
            self.conv3 = pair(lambda: nn.Conv2d(256, 192, 3, padding=1))
            self.conv4 = pair(lambda: nn.Conv2d(192, 192, 3, padding=1))
            self.conv5 = pair(lambda: nn.Conv2d(192, 128, 3, padding=1))
            self.fc6 = pair(lambda: nn.Linear(2304, 2048))
            self.fc7 = pair(lambda: nn.Linear(4096, 2048))
            self.drop = nn.Dropout(0.5)
            self.fc8 = nn.Linear(4096, 100)

        def forward(self, x):
            def each(modules, xs):
                return [module(t) for module, t in zip(modules, xs)]

            towers = [F.relu(t) for t in each(self.conv1, [x, x])]
            if self.lrn1_across_towers:
                towers = list(self.lrn1[0](torch.cat(towers, 1)).chunk(2, 1))
            else:
                towers = each(self.lrn1, towers)
            towers = [self.pool(t) for t in towers]
            towers = each(self.lrn2, [F.relu(t) for t in each(self.conv2, towers)])
            x = torch.cat([self.pool(t) for t in towers], 1)
            towers = [F.relu(t) for t in each(self.conv3, [x, x])]  # conv3 sees both towers
            towers = [F.relu(t) for t in each(self.conv4, towers)]
            towers = [F.relu(t) for t in each(self.conv5, towers)]
            x = torch.cat([self.pool(t) for t in towers], 1).flatten(1)
            x = torch.cat([self.drop(F.relu(fc(x))) for fc in self.fc6], 1)
            x = torch.cat([self.drop(F.relu(fc(x))) for fc in self.fc7], 1)
            return self.fc8(x)

    def conv(cin, cout, kernel, padding):
        return [nn.Conv2d(cin, cout, kernel, 1, padding), nn.ReLU(inplace=True)]

    class TowerMajor(nn.Module):
        def __init__(self):
            super().__init__()
            front = lambda: nn.Sequential(
                *conv(3, 48, 5, 2), lrn(), nn.MaxPool2d(3, 2), *conv(48, 128, 5, 2), lrn(), nn.MaxPool2d(3, 2)
            )
            back = lambda: nn.Sequential(
                *conv(256, 192, 3, 1), *conv(192, 192, 3, 1), *conv(192, 128, 3, 1), nn.MaxPool2d(3, 2)
            )
            self.front, self.back = pair(front), pair(back)
            self.fc6 = pair(lambda: nn.Sequential(nn.Linear(2304, 2048), nn.ReLU(), nn.Dropout(0.5)))
            self.fc7 = pair(lambda: nn.Sequential(nn.Linear(4096, 2048), nn.ReLU(), nn.Dropout(0.5)))
            self.fc8 = nn.Linear(4096, 100)

        def forward(self, x):
            for towers in (self.front, self.back):
                x = torch.cat([tower(x) for tower in towers], 1)
            x = x.flatten(1)
            for towers in (self.fc6, self.fc7):
                x = torch.cat([tower(x) for tower in towers], 1)
            return self.fc8(x)

    def build_layer_major():
        return LayerMajor()

    def build_tower_major():
        return TowerMajor()

    def build_dividing_lrn():
        return LayerMajor(alpha=1e-4)

    def build_lrn_across_towers():
        return LayerMajor(lrn1_across_towers=True)
"""

# The usual PyTorch split: grouped convolutions, and LRN per tower through a wrapper that calls one
# nn.LocalResponseNorm on each half of the channels.
TORCH_LRN_WRAPPER = """
    import torch
    from torch import nn

    class TowerLRN(nn.Module):
        def __init__(self):
            super().__init__()
            self.lrn = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)

        def forward(self, x):
            return torch.cat([self.lrn(half) for half in x.chunk(2, dim=1)], dim=1)

    def conv(cin, cout, kernel, padding, groups=1):
        return [nn.Conv2d(cin, cout, kernel, 1, padding, groups=groups), nn.ReLU()]

    def build():
        return nn.Sequential(
            *conv(3, 96, 5, 2), TowerLRN(), nn.MaxPool2d(3, 2),
            *conv(96, 256, 5, 2, groups=2), TowerLRN(), nn.MaxPool2d(3, 2),
            *conv(256, 384, 3, 1), *conv(384, 384, 3, 1, groups=2), *conv(384, 256, 3, 1, groups=2),
            nn.MaxPool2d(3, 2), nn.Flatten(),
            nn.Linear(2304, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, 100),
        )
"""

# A Keras functional port of the split: channel slices in Lambdas, per-tower Conv2D and LRN (a Lambda around
# tf.nn.local_response_normalization, which does not divide alpha), joined with Concatenate.
KERAS_TOWERS = """
    import keras
    import tensorflow as tf
    from keras import layers

    def half(i):
        return layers.Lambda(lambda t: t[..., 48 * i : 48 * (i + 1)], name=f"tower{i}")

    def lrn(name):
        return layers.Lambda(
            lambda t: tf.nn.local_response_normalization(t, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75),
            name=name,
        )

    def build():
        image = keras.Input((32, 32, 3))
        x = layers.Conv2D(96, 5, padding="same", activation="relu", name="conv1")(image)
        towers = []
        for i in range(2):
            t = lrn(f"lrn1_{i}")(half(i)(x))
            t = layers.MaxPooling2D(3, 2, name=f"pool1_{i}")(t)
            t = layers.Conv2D(128, 5, padding="same", activation="relu", name=f"conv2_{i}")(t)
            t = lrn(f"lrn2_{i}")(t)
            towers.append(layers.MaxPooling2D(3, 2, name=f"pool2_{i}")(t))
        x = layers.Concatenate(name="join2")(towers)
        towers = []
        for i in range(2):
            t = layers.Conv2D(192, 3, padding="same", activation="relu", name=f"conv3_{i}")(x)
            t = layers.Conv2D(192, 3, padding="same", activation="relu", name=f"conv4_{i}")(t)
            t = layers.Conv2D(128, 3, padding="same", activation="relu", name=f"conv5_{i}")(t)
            towers.append(layers.MaxPooling2D(3, 2, name=f"pool5_{i}")(t))
        x = layers.Flatten()(layers.Concatenate(name="join5")(towers))
        for fc in ("fc6", "fc7"):
            halves = [layers.Dense(2048, activation="relu", name=f"{fc}_{i}")(x) for i in range(2)]
            x = layers.Dropout(0.5)(layers.Concatenate(name=f"{fc}_join")(halves))
        return keras.Model(image, layers.Dense(100, name="fc8")(x))
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


def assert_passes(report) -> None:
    """Compared, every layer within tolerance: the merged towers got the right weights and outputs."""
    assert report.compared, report.not_compared_because
    assert report.ok, [(c.name, c.problems) for c in report.layers if c.problems]
    compared = [c for c in report.layers if c.rel_diff is not None]
    assert {c.name for c in compared} >= {"conv1", "lrn1", "pool1", "conv2", "conv4", "pool5", "fc6", "fc8"}
    assert all(c.rel_diff <= RTOL for c in compared)


def test_an_lrn_wrapper_calling_one_module_per_tower_passes(tmp_path):
    path = write_port(tmp_path, "port_lrn_wrapper.py", TORCH_LRN_WRAPPER)
    report = check_model(f"{path}:build", get_variant("cifar100-split"), rtol=RTOL)
    assert_passes(report)
    lrn1 = report.layers[1]
    assert lrn1.port.output_shape == (96, 32, 32) and len(lrn1.port.parts) == 2


@pytest.mark.parametrize("factory", ["build_layer_major", "build_tower_major"])
def test_per_tower_modules_are_merged_into_the_spec_layers(tmp_path, factory):
    path = write_port(tmp_path, "port_towers.py", TORCH_TOWERS)
    report = check_model(f"{path}:{factory}", get_variant("cifar100-split"), rtol=RTOL, batch_size=1)
    assert_passes(report)
    checks = {c.name: c for c in report.layers}
    conv2, conv3, conv4, fc6 = (checks[name].port for name in ("conv2", "conv3", "conv4", "fc6"))
    assert len(conv2.parts) == 2 and conv2.config["groups"] == 2 and conv2.config["filters"] == 256
    assert conv3.config["groups"] == 1 and conv4.config["groups"] == 2  # conv3 sees both towers
    assert fc6.config["units"] == 4096 and fc6.params == checks["fc6"].spec_params


def test_a_keras_port_split_into_towers_with_concatenate_passes(tmp_path):
    path = write_port(tmp_path, "port_keras_towers.py", KERAS_TOWERS)
    report = check_model(f"{path}:build", get_variant("cifar100-split"), rtol=RTOL, batch_size=1)
    assert report.framework == "keras"
    assert_passes(report)
    assert [p.name for p in report.layers[3].port.parts] == ["conv2_0", "conv2_1"]


def test_a_per_tower_port_with_a_dividing_lrn_fails_at_lrn1_with_the_constants(tmp_path):
    path = write_port(tmp_path, "port_towers.py", TORCH_TOWERS)
    report = check_model(f"{path}:build_dividing_lrn", get_variant("cifar100-split"), rtol=RTOL, batch_size=1)
    assert report.compared and not report.ok
    first = report.first_failing
    assert first.name == "lrn1" and "alpha divided by n" in first.problems[0]
    assert report.layers[0].ok and report.layers[0].rel_diff <= RTOL


def test_an_lrn_across_both_towers_fails_at_lrn1(tmp_path):
    path = write_port(tmp_path, "port_towers.py", TORCH_TOWERS)
    report = check_model(f"{path}:build_lrn_across_towers", get_variant("cifar100-split"), rtol=RTOL, batch_size=1)
    assert report.compared and not report.ok
    first = report.first_failing
    assert first.name == "lrn1" and first.rel_diff > RTOL
    assert any("outputs differ" in p and "crosses the towers" in p for p in first.problems)


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
