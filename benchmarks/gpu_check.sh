#!/usr/bin/env bash
# The ready GPU check: prints the device (nvidia-smi -L, or "no GPU"), then runs benchmarks/gpu_check.py, which
# prints TensorFlow's visible devices and runs the parts (retrieval metrics, training throughput of the
# frozen-feature methods, HashGAN CIFAR-10 steps/s, feature-extraction throughput, MirroredStrategy over all
# visible GPUs), each under a time limit, a failure recorded without stopping the others, all gathered into one
# JSON file. Under 8 minutes on one GPU (the limits add up to 7.5); --quick checks the script on tiny sizes on a
# CPU. The figures and their meaning: benchmarks/gpu_check.py's docstring.
#
#   bash benchmarks/gpu_check.sh [--quick] [--output gpu_check.json] [--parts ...] [--limit PART=SECONDS]
#
# PYTHON selects the interpreter (default: python, else python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$(command -v python || command -v python3)}"

echo "== device"
nvidia-smi -L 2>/dev/null || echo "no GPU"

exec "$python" "$here/gpu_check.py" "$@"
