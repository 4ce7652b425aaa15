"""pytest-benchmark: one training step and one inference step per CIFAR-100 variant.

The steps are the runner's own (``benchmarks.cell.PreparedCell``, from the framework's adapter),
timed in pedantic mode: one step per round, the device synchronised inside the timed call,
warm-up rounds first. Not collected by the plain test run (the file is not named ``test_*``):

    pytest tests/step_benchmarks/bench_steps.py --benchmark-json=torch.json
    pytest tests/step_benchmarks/bench_steps.py --framework keras --benchmark-json=keras.json
"""

import os

import pytest

from benchmarks import frameworks
from benchmarks.cell import GPU_DEFAULT_MATH_MODE, CellConfig


@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize("variant", ["cifar100-single", "cifar100-split"])
def test_step(benchmark, request, framework, variant, mode):
    batch = request.config.getoption("--bench-batch-size")
    gpus = request.config.getoption("--gpus")
    impl = frameworks.default_split_impl(framework, variant)
    math_mode = GPU_DEFAULT_MATH_MODE if gpus else "fp32"
    config = CellConfig(framework, variant, mode, batch, impl, gpus=gpus, math_mode=math_mode)
    cell = frameworks.get(framework).prepare(config)

    steps_taken = []

    def synchronised_step():
        cell.step()
        cell.sync()
        steps_taken.append(1)

    benchmark.group = f"{variant} {mode}"
    benchmark.extra_info.update(
        {
            "framework": framework,
            "variant": variant,
            "mode": mode,
            "batch_size": batch,
            "split_impl": impl,
            "device_setup": config.device_setup,
            "math_mode": config.math_mode,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
    )
    benchmark.pedantic(synchronised_step, rounds=10, iterations=1, warmup_rounds=3)
    assert cell.images_per_step == batch
    if benchmark.disabled:  # the smoke run: the step ran once, without an error
        assert len(steps_taken) == 1
    else:  # every round timed one synchronised step after the warm-up rounds
        assert len(steps_taken) == 13 and benchmark.stats.stats.min > 0
