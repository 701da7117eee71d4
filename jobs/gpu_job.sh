#!/usr/bin/env bash
# The GPU job (docs/gpu.md): install from wheels/, collect, pretrain for a wall time, evaluate zero-shot,
# bring float16 weights and metrics back in $OUT. Options: python3 jobs/gpu_job.py --help.
# Through the device tool:
#   run(command="bash jobs/gpu_job.sh --domain walker", carry=["wheels"], timeout_s=560)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MUJOCO_GL="${MUJOCO_GL:-egl}"
exec python3 jobs/gpu_job.py "$@"
