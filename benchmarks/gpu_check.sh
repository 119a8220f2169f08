#!/usr/bin/env bash
# The GPU check of the scale work, on one recent GPU, in under 8 minutes (docs/scale.md):
#   1. bf16-mixed distillation of an mBERT-shaped random teacher (config only, no download):
#      tokens/s and MFU, with the FLOPs formula in benchmarks/gpu_check.py's docstring;
#   2. exact resume on the GPU: stopped mid-epoch and resumed = uninterrupted, weight by weight;
#   3. one task=classify job through run.py with trainer=gpu.
#
#   benchmarks/gpu_check.sh [OUT_DIR] [gpu_check.py options]   # writes OUT_DIR/gpu_check.json
#   benchmarks/gpu_check.sh --dry-run                          # no GPU: argument parsing, model build, FLOPs
#
# Exit status: 0 all checks passed, 1 a check failed, 2 no CUDA device, 124 the 8-minute limit hit.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--dry-run" ]]; then
  exec python benchmarks/gpu_check.py "$@"
fi

out="${1:-gpu_check_out}"
shift || true
# Fail fast, before any model is built, when there is no GPU to check.
if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check.sh: no CUDA device is visible to PyTorch (torch.cuda.is_available() is False)." >&2
  echo "Run it on a machine with a GPU and a CUDA build of torch, or try: benchmarks/gpu_check.sh --dry-run" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

mkdir -p "$out"
export TOKENIZERS_PARALLELISM=false WANDB_MODE=offline WANDB_SILENT=true HF_HUB_OFFLINE=1
export CUBLAS_WORKSPACE_CONFIG=:4096:8   # deterministic cuBLAS for the bit-exact resume check
timeout 480 python benchmarks/gpu_check.py --out "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
