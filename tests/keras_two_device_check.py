"""Run in a fresh process by test_keras_multi_device: Keras on two logical CPUs, printed as JSON.

Logical devices must be configured before TensorFlow starts its runtime, which other tests in
the pytest process have already done.
"""

import json

import numpy as np

from implementations.keras_multi_device import (
    build_data_parallel,
    build_model_parallel,
    compile_for_training,
    configure_logical_cpus,
)

devices = configure_logical_cpus(2)

from implementations import keras_alexnet  # noqa: E402
from implementations.spec import parameter_count  # noqa: E402
from implementations.torch_alexnet import build_torch_model  # noqa: E402
from implementations.variants import get_variant  # noqa: E402
from implementations.weight_mapping import torch_to_keras  # noqa: E402

split = get_variant("cifar100-split")
weights = torch_to_keras(build_torch_model(split).export_weights(), split)
x = (np.random.default_rng(0).standard_normal((4, 32, 32, 3)) * 100).astype(np.float32)
y = np.array([1, 5, 7, 99])

model_parallel = build_model_parallel(split, devices)
keras_alexnet.load_weights(model_parallel, weights)
reference = keras_alexnet.build_keras_model(split)
keras_alexnet.load_weights(reference, weights)
mp_logits = np.asarray(model_parallel(x, training=False))
ref_logits = np.asarray(reference(x, training=False))

# Data parallel: one SGD step on a global batch of 4 against the same step on one device.
single = get_variant("cifar100-single").replace_layer("dropout6", rate=0.0).replace_layer("dropout7", rate=0.0)
single_weights = torch_to_keras(build_torch_model(single).export_weights(), single)
_, mirrored = build_data_parallel(single, "grouped", devices, weight_decay=5e-4, learning_rate=0.01, momentum=0.9)
keras_alexnet.load_weights(mirrored, single_weights)
alone = keras_alexnet.build_keras_model(single)
compile_for_training(alone, 5e-4, 0.01, 0.9)
keras_alexnet.load_weights(alone, single_weights)
losses = [float(mirrored.train_on_batch(x, y)), float(alone.train_on_batch(x, y))]
after = [keras_alexnet.export_weights(m, single) for m in (mirrored, alone)]
update = {name: np.abs(after[0][name]["kernel"] - after[1][name]["kernel"]).max() for name in after[0]}
moved = {name: np.abs(after[1][name]["kernel"] - single_weights[name]["kernel"]).max() for name in after[1]}

print(
    json.dumps(
        {
            "devices": devices,
            "mp_params": model_parallel.count_params(),
            "spec_params": parameter_count(split),
            "mp_max_diff": float(np.abs(mp_logits - ref_logits).max()),
            "logit_scale": float(np.abs(ref_logits).max()),
            "tower_devices": {
                f"{name}_tower{i}": model_parallel.get_layer(f"{name}_tower{i}").kernel.value.device
                for name in ("conv2", "fc6")
                for i in (0, 1)
            },
            "dp_losses": losses,
            "dp_max_weight_diff": float(max(update.values())),
            "min_layer_update": float(min(moved.values())),
        }
    )
)
