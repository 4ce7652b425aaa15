#!/usr/bin/env bash
# GPU check: every GPU path of the suite on one NVIDIA GPU, one prepared run, under 8 minutes, one table
# (img/s, fraction of the ceiling in the same math mode, memory, energy per image). See benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh [--dry-run] [--results FILE]
#
# Needs: python3 with torch (CUDA build), pandas, typer, rich and nvidia-ml-py. Uses JAX (CUDA plugin) and
# TensorFlow where installed; parts whose framework is absent are skipped, one line each. Without network,
# Keras can come as wheels in wheels/ (git-ignored): `pip download keras namex optree -d wheels/` elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d wheels ] && ! python3 -c "import keras" 2>/dev/null; then
  python3 -m pip install --quiet --no-index --find-links wheels keras || echo "keras from wheels/ did not install"
fi
python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPU:', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
exec python3 -m benchmarks.gpu_check --results "${OUT:-results}/gpu_check.jsonl" "$@"
