#!/usr/bin/env bash
# GPU check: the PyTorch cells at batch 128 on the ImageNet and CIFAR-100 variants, with NVML
# memory, on a machine with one NVIDIA GPU and PyTorch (TensorFlow not needed). Under 5 minutes.
#
#   bash benchmarks/gpu_check.sh [RESULTS_FILE]
#
# Needs: python with torch (CUDA build), plus pandas, typer, rich and nvidia-ml-py; the script
# installs those four from PyPI if they are missing. Keras runs on the torch backend
# (keras-torch: Keras 3 from PyPI wheels, no TensorFlow), on TensorFlow when it is importable,
# and on JAX when JAX sees the GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-${OUT:-results}/gpu_check.jsonl}
mkdir -p "$(dirname "$results")"

python - <<'PY' || python -m pip install --quiet pandas typer rich nvidia-ml-py
import pandas, typer, rich, pynvml  # noqa: F401
PY
python -c "import torch; assert torch.cuda.is_available(), 'PyTorch sees no CUDA GPU'; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

frameworks=(-f torch)
if python -c "import keras" 2>/dev/null || python -m pip install --quiet "keras>=3.0"; then
  frameworks+=(-f keras-torch)
fi
if python -c "import tensorflow" 2>/dev/null; then frameworks+=(-f keras); fi
if python -c "import jax; assert jax.devices()[0].platform == 'gpu'" 2>/dev/null; then frameworks+=(-f keras-jax); fi

python bench.py run --gpus 1 "${frameworks[@]}" -b 128 --steps 30 --warmup 5 \
  -v imagenet-single -v imagenet-split -v cifar100-single -v cifar100-split \
  --split-impl grouped --split-impl towers --cell-timeout 120 --results "$results"
echo "rows in $results"
