#!/usr/bin/env bash
# The checks that need a CUDA device, in one run (a lent GPU machine, or any machine with one):
# the `gpu` tests (every controller's device synchronisations against the CPU stand-in's count, a bf16
# trainer run) and the GPU benches of the controllers and the simulator. Needs torch with CUDA, pytest
# and hypothesis; gymnasium for the simulator bench. Run from the repository root:
#   bash entrolab/bench/gpu_check.sh [OUT_DIR]      (OUT_DIR, default entrolab/bench/results: where the logs are copied)
# Uses $PYTHON (default python3). Each step has a time limit; a failing step does not stop the others,
# and the exit status is that of the tests.
set -u
PY=${PYTHON:-python3}
OUT=${1:-entrolab/bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-dev}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
# only the files that hold gpu tests: the others may import packages a GPU image lacks (trl, verl, gymnasium)
timeout 300 "$PY" -m pytest -q -m gpu -p no:cacheprovider --tb=short $(grep -rl "mark.gpu" tests --include="test_*.py") \
  > "$OUT/gpu_pytest.log" 2>&1
rc=$?
grep -E "passed|failed|^E   " "$OUT/gpu_pytest.log" | cut -c1-600 | tail -30
timeout 200 "$PY" -m entrolab.bench controllers --device cuda 2>&1 | tail -4
timeout 300 "$PY" -m entrolab.bench sim --quick --device cuda 2>&1 | tail -6
exit $rc
