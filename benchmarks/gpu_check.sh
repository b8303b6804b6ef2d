#!/usr/bin/env bash
# GPU readiness check of the Penn Action config in at most 5 minutes; writes one Markdown
# table (default gpu_check.md). Needs no network: random weights, generated videos.
#   bash benchmarks/gpu_check.sh [OUT.md]        # PYTHON=... to use another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check.md}
python=${PYTHON:-"uv run --frozen python"}
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check: no nvidia-smi: GPU figures will read 'not measured'" >&2
fi
timeout 300 $python benchmarks/gpu_check.py --out "$out"
