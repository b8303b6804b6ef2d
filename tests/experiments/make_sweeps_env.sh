#!/usr/bin/env bash
# A small Python environment holding W&B's open-source sweep engine (the `sweeps` package needs
# numpy < 2; the project uses numpy 2), for tests/experiments/test_sweeps.py. Prints its python.
#   tests/experiments/make_sweeps_env.sh [DIR]   (default: $MVF_SWEEPS_ENV or
#                                                 ~/.cache/mvf_lightning/sweeps-env)
set -euo pipefail
dir="${1:-${MVF_SWEEPS_ENV:-$HOME/.cache/mvf_lightning/sweeps-env}}"
if ! "$dir/bin/python" -c "import sweeps" >/dev/null 2>&1; then
  uv venv --quiet --allow-existing --python "${SWEEPS_PYTHON:-3.11}" "$dir" >&2
  uv pip install --quiet --python "$dir/bin/python" "sweeps>=0.3,<0.4" "numpy<2" >&2
fi
echo "$dir/bin/python"
