#!/usr/bin/env bash
# The Python module on a lent GPU machine (device tool, repository root; nothing to carry, or
# .gpu-bundle for its Boost .deb files): builds only the extension longhaul._C and the libraries
# it links against that machine's python3 and torch 2.11 (Release, sm_90a, no MPI/HDF5/tests, all
# cores), then runs tests/python/test_cuda.py and examples/train_gpt.py --device cuda at 8K-32K
# tokens per sequence. Logs land in $OUT (default ./gpu-python-out); a short summary at the end.
# Stops within GPU_PYTHON_BUDGET seconds (default 290): each step's `timeout` is what is left.
#   GPU_PYTHON_BUILD   build folder (default /tmp/lh-pybuild; kept, so a rerun on a warm machine is incremental)
#   GPU_PYTHON_STEPS   example steps (default 40)
#   GPU_PYTHON_PHASE   build (configure and build only: needs no GPU, so gpu_check.sh starts it in the
#                      background while the GPU runs its tests), test (the tests on that build), or all (default)
#   GPU_PYTHON_JOBS    build jobs (default: all cores)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/gpu-python-out}
mkdir -p "$out"
: > "$out/summary.txt"
# shellcheck source=scripts/gpu_env.sh
. "$root/scripts/gpu_env.sh"
build=${GPU_PYTHON_BUILD:-/tmp/lh-pybuild}
steps=${GPU_PYTHON_STEPS:-40}
phase=${GPU_PYTHON_PHASE:-all}
t0=$SECONDS
log() { echo "== $(date +%T) +$((SECONDS - t0))s $*" | tee -a "$out/summary.txt"; }
lh_budget "${GPU_PYTHON_BUDGET:-290}"

lh_torch_env || { log "python3 has no torch"; exit 1; }
lh_machine_info > "$out/machine.txt" 2>&1
cat "$out/machine.txt"
"$LH_PYTHON" - <<'EOF' || { log "no Python headers (Python.h) for $LH_PYTHON: the extension cannot be built here"; exit 1; }
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
EOF

# ---- build: the extension target only -------------------------------------------------------
# Boost is REQUIRED at configure time but linked only by the CLI: the machine's own, else the
# bundle's .deb files, else a stand-in package (the extension links no Boost).
if [ "$phase" != test ]; then
  boost_args=()
  if ! compgen -G "/usr/lib/x86_64-linux-gnu/cmake/Boost-*" >/dev/null && ! compgen -G "/usr/local/lib/cmake/Boost-*" >/dev/null &&
     ! compgen -G "/usr/lib/cmake/Boost-*" >/dev/null; then
    if lh_unpack_debs "$root/.gpu-bundle/debs"; then
      boost_args=(-DCMAKE_PREFIX_PATH="$LH_DEPS" -DBoost_INCLUDE_DIR="$LH_DEPS/include")
      log "Boost from .gpu-bundle/debs"
    else
      boost_args=(-DBoost_DIR="$(lh_boost_stub /tmp/lh-boost-stub)" -DBoost_NO_SYSTEM_PATHS=ON)
      log "no Boost here: a stand-in package (only the extension is built)"
    fi
  fi
  jobs=${GPU_PYTHON_JOBS:-$(nproc)}
  log "configure ($build)"
  timeout "$(lh_limit 90)" cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
      -DLONGHAUL_WITH_MPI=OFF -DLONGHAUL_WITH_HDF5=OFF -DLONGHAUL_BUILD_TESTS=OFF -DLONGHAUL_WITH_PYTHON=ON \
      -DPython3_EXECUTABLE="$LH_PYTHON" "${boost_args[@]}" > "$out/build.log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    log "build longhaul_python, $jobs jobs"
    timeout "$(lh_limit 420 5)" cmake --build "$build" --target longhaul_python -j "$jobs" >> "$out/build.log" 2>&1
    rc=$?
  fi
  if [ $rc -ne 0 ]; then
    log "build failed (exit $rc)"
    grep -E "error|Error|FAILED" "$out/build.log" | head -20 | tee -a "$out/summary.txt"
    tail -20 "$out/build.log"
    exit 1
  fi
fi
if ! compgen -G "$build/python/longhaul/_C*.so" >/dev/null; then
  log "no extension in $build (GPU_PYTHON_PHASE=$phase: build it first)"
  exit 1
fi
log "built: $(ls "$build"/python/longhaul/_C*.so)"
[ "$phase" = build ] && exit 0
export PYTHONPATH="$build/python:$root/tests/python${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
"$LH_PYTHON" -c 'import longhaul, torch; i = longhaul.info(); print("longhaul", i["version"], "cuda_built", i["cuda_built"], "backends", i["backends"], "torch", torch.__version__, "cuda", torch.cuda.is_available())' \
  2>&1 | tee -a "$out/summary.txt"

# ---- the CUDA tests -------------------------------------------------------------------------
log "pytest tests/python/test_cuda.py"
timeout "$(lh_limit 150 5)" "$LH_PYTHON" -m pytest -q -rfEs -p no:cacheprovider "$root/tests/python/test_cuda.py" \
  > "$out/pytest_cuda.log" 2>&1
rc=$?
log "pytest exit $rc: $(tail -1 "$out/pytest_cuda.log")"
grep -E "^(FAILED|ERROR|SKIPPED)" "$out/pytest_cuda.log" | head -20 | tee -a "$out/summary.txt"
# The tracebacks of a failure, to stdout (what the caller keeps): the log itself stays here.
[ $rc -eq 0 ] || tail -80 "$out/pytest_cuda.log"

# ---- the example at 8K-32K tokens (test_cuda.py already trained it briefly: only with time left) --
if [ "$(lh_limit 9999 0)" -lt 60 ]; then
  log "examples/train_gpt.py at 8K-32K tokens skipped: $(lh_limit 9999 0) s left"
  exit 0
fi
log "examples/train_gpt.py --device cuda, $steps steps of 32768 tokens (sequences of 8K-32K)"
timeout "$(lh_limit 100 3)" "$LH_PYTHON" "$root/examples/train_gpt.py" --device cuda --steps "$steps" \
    --min-log2 13 --max-log2 15 --tokens-per-step 32768 --doc-lengths 8192,40000 --docs 64 \
    --dim 512 --heads 8 --kv-heads 4 --layers 4 --lr 3e-3 > "$out/train_gpt_cuda.log" 2>&1
rc=$?
losses=$(grep -E '^step ' "$out/train_gpt_cuda.log" | awk '{print $4}')
n=$(echo "$losses" | grep -c . || true)
log "train_gpt exit $rc: $n steps, loss $(echo "$losses" | head -1) -> $(echo "$losses" | tail -1)"
grep -E '^train_gpt: [0-9]+ tokens/s' "$out/train_gpt_cuda.log" | tee -a "$out/summary.txt"
[ $rc -eq 0 ] || tail -5 "$out/train_gpt_cuda.log" | tee -a "$out/summary.txt"

echo
echo "---- summary ($out) ----"
cat "$out/summary.txt"
