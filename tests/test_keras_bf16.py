"""A Keras mixed_bfloat16 training step runs (TensorFlow has no bf16 LRN kernel) and learns nothing odd.

One step at batch 2: emulated bf16 (a CPU without AVX512-BF16/AMX) is slow, and the defect was a
missing kernel, which one step finds.
"""

import keras
import numpy as np
import pytest

from implementations.keras_alexnet import build_keras_model
from implementations.keras_training import compile_for_training
from implementations.variants import get_variant


@pytest.mark.parametrize("impl", ["grouped", "towers"])
def test_keras_bf16_training_step_runs_with_float32_lrn(mixed_bfloat16, impl):
    arch = get_variant("cifar100-split")
    keras.utils.set_random_seed(0)
    model = build_keras_model(arch, impl)
    compile_for_training(model)
    rng = np.random.default_rng(0)
    c, h, w = arch.input_shape
    x = rng.standard_normal((2, h, w, c)).astype(np.float32)
    y = rng.integers(0, arch.classes, 2)
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    loss = float(model.train_on_batch(x, y))
    # Cross-entropy of a near-uniform guess over 100 classes is ln(100) ~ 4.6.
    assert np.isfinite(loss) and 0.5 * np.log(arch.classes) < loss < 2 * np.log(arch.classes)
    lrns = [layer for layer in model.layers if "lrn" in layer.name]
    convs = [layer for layer in model.layers if layer.name.startswith("conv")]
    assert lrns and all(layer.compute_dtype == "float32" for layer in lrns)
    assert convs and all(layer.compute_dtype == "bfloat16" for layer in convs)
    assert any(
        not np.array_equal(b, keras.ops.convert_to_numpy(v))
        for b, v in zip(before, model.trainable_variables, strict=True)
    )
