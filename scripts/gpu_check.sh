#!/usr/bin/env bash
# The one script a session lent a GPU runs there (device tool, repository root, carry
# .gpu-bundle made by scripts/pack_gpu_bundle.sh). It uses the carried binaries against that
# machine's torch 2.11 libraries, or, if they cannot start, builds there for sm_90a against
# that torch. Then: the `gpu` tests (every mask family x dtype against the float64 reference, the
# ragged-cuDNN probe and routes printed), the CUDA rows of `bench kernel` (causal, LongCA-bench's
# long-document mix and a causal window of 1024 at 16K and 128K tokens, MHA 16 and GQA 64:8; the
# float32 window; documents again on FlashAttention-2 alone), `bench cp-gpu` (P thread-ranks
# emulated on the one GPU, 128K tokens), `bench layer` (one transformer block at 128K tokens),
# `longhaul train --device cuda` (fp64 against the CPU, bf16 tokens/s) and, last, the Python
# module built there against that machine's python (scripts/gpu_python.sh: its build starts in the
# background at once, on half the cores, while the GPU runs the other sections; its tests run last).
# `band` runs the cuDNN band route (LONGHAUL_CUDA_BAND=cudnn: windows, bottom-right causal pieces
# and the documents' backward on cuDNN's graph API, off by default until measured) in processes of
# its own, after the sections that measure the targets: its GPU test against the float64
# reference, then the window and documents kernel rows again, to set beside the
# FlashAttention-2 rows of `kernel`, and LONGHAUL_CUDA_BAND=auto's timing line and verdict
# (appended to the kernel file).
# Everything lands in $OUT (8 files at most, the device tool's limit: machine, summary, tests,
# kernel, cp, layer, train, python); the summary ends with every target against what was measured
# (scripts/gpu_targets.py). Each step has its own time limit and a failed step does not stop the others.
# GPU_CHECK_ONLY="tests kernel" runs only those sections (tests, kernel, band, cp, layer, train, python).
# One device call runs it all: GPU_CHECK_BUDGET (default 560 s, under the call's 600 s) bounds the
# whole script; each step's limit is cut to what is left, and a section reached with under 30 s
# left is skipped with a line in the summary. Sections come in order of what the numbers are for
# (correctness, kernel rates, CP, layer, training, the band route, Python), and every file is
# written as it goes, so a call stopped at its limit still returns all it finished. (On an H100 in
# 2026-11, tests, kernel rows and CP took 70 s.) The gpu tests run in four processes (attention;
# attention with ragged cuDNN forced on; CP, training and communicators; NCCL), so a sticky CUDA
# error or a hang in one spoils none of the others.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/gpu-check-out}
mkdir -p "$out"
bundle=$root/.gpu-bundle
log() { echo "== $(date +%T) $*" | tee -a "$out/summary.txt"; }
# shellcheck source=scripts/gpu_env.sh
. "$root/scripts/gpu_env.sh"
lh_budget "${GPU_CHECK_BUDGET:-560}"
# section NAME TITLE: NAME is selected (GPU_CHECK_ONLY) and at least 30 s are left; logs TITLE, or the skip.
section() {
  [ -z "${GPU_CHECK_ONLY:-}" ] || [[ " $GPU_CHECK_ONLY " == *" $1 "* ]] || return 1
  if (($(lh_limit 9999 0) < 30)); then
    log "$1 skipped: $(lh_limit 9999 0) s of GPU_CHECK_BUDGET left"
    return 1
  fi
  log "$2"
}

# ---- the machine ----------------------------------------------------------------------------
lh_torch_env
export LD_LIBRARY_PATH="$bundle/lib:$LD_LIBRARY_PATH"
{ lh_machine_info; cat "$bundle/commit" 2>/dev/null; } > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

bin=$bundle/bin
if ! "$bin/longhaul" info >> "$out/machine.txt" 2>&1; then
  log "carried binaries do not start ($(tail -1 "$out/machine.txt")); building here for sm_90a"
  lh_unpack_debs "$bundle/debs" /tmp/lh-deps || log "no .deb files in the bundle: the build needs Boost and GoogleTest here"
  build=/tmp/lh-build
  timeout "$(lh_limit 120 300)" cmake -S "$root" -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
      -DLONGHAUL_WITH_MPI=OFF -DLONGHAUL_WITH_HDF5=OFF -DCMAKE_PREFIX_PATH="${LH_DEPS:-}" \
      -DBoost_INCLUDE_DIR="${LH_DEPS:-}/include" -DGTEST_ROOT="${LH_DEPS:-}" > /tmp/lh-build.log 2>&1 &&
    timeout "$(lh_limit 420 240)" cmake --build $build --target longhaul longhaul_gpu_tests -j "$(nproc)" >> /tmp/lh-build.log 2>&1 ||
    { log "build failed"; tail -30 /tmp/lh-build.log | tee -a "$out/machine.txt"; }
  # The fresh binaries' own libraries, not the carried ones that did not start (LD_LIBRARY_PATH
  # would override their RUNPATH).
  export LD_LIBRARY_PATH=${LD_LIBRARY_PATH//"$bundle/lib:"/}
  mkdir -p /tmp/lh-bin && cp $build/cli/longhaul $build/tests/longhaul_gpu_tests /tmp/lh-bin/ 2>/dev/null
  bin=/tmp/lh-bin
  "$bin/longhaul" info >> "$out/machine.txt" 2>&1 || log "longhaul does not start: $(tail -2 "$out/machine.txt")"
fi
log "longhaul info: $(tail -1 "$out/machine.txt")"

# ---- the Python module's build, in the background (it needs no GPU) --------------------------
# Configured and built here while the GPU runs the sections below (half the cores, niced); the
# python section waits for it and then runs only the tests.
# Its own session (setsid), so that stopping it stops the compilers too (`timeout` inside it puts
# them in process groups of their own, but not in another session).
py_build_pid=
if [ -z "${GPU_CHECK_ONLY:-}" ] || [[ " $GPU_CHECK_ONLY " == *" python "* ]]; then
  starter=(nice -n 10)
  command -v setsid >/dev/null && starter=(setsid nice -n 10)
  OUT=/tmp/lh-python-build GPU_PYTHON_PHASE=build GPU_PYTHON_JOBS=$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 )) \
    GPU_PYTHON_BUDGET=$(lh_limit 480 60) "${starter[@]}" "$root/scripts/gpu_python.sh" > /tmp/lh-python-build.log 2>&1 &
  py_build_pid=$!
fi
stop_python_build() {
  [ -n "$py_build_pid" ] && kill -0 "$py_build_pid" 2>/dev/null || return 1
  pkill -TERM -s "$py_build_pid" 2>/dev/null || kill -- "-$py_build_pid" 2>/dev/null || kill "$py_build_pid" 2>/dev/null
}

# ---- gpu tests ------------------------------------------------------------------------------
# In processes of their own, so that a sticky CUDA error or a hang in one part spoils no other:
# the attention kernels; them again with ragged cuDNN forced on (LONGHAUL_CUDA_VARLEN=cudnn: by
# default it runs only where its timing beats FlashAttention-2, so its correctness is checked
# here either way); CP, training, the local and c10d communicators; NCCL's tests last (its
# deadline test aborts a communicator with work queued). PART=LIMIT:FILTER[:ENV].
section tests "gpu tests" && for part in "attention_tests=120:AttentionCuda*:-AttentionCudaBand*" \
    "ragged_cudnn_tests=90:AttentionCuda.Documents:AttentionCuda.RaggedCudnn*:AttentionCuda.EveryFamily*:AttentionCuda.ZigzagShardPairs*:LONGHAUL_CUDA_VARLEN=cudnn" \
    "cp_train_tests=180:-AttentionCuda*:Nccl*" "nccl_tests=90:Nccl*"; do
  name=${part%%=*} rest=${part#*=}
  limit=${rest%%:*} filter=${rest#*:} env=
  if [[ $filter == *:LONGHAUL_* ]]; then env=LONGHAUL_${filter##*:LONGHAUL_}; filter=${filter%:LONGHAUL_*}; fi
  env $env timeout "$(lh_limit "$limit")" "$bin/longhaul_gpu_tests" --gtest_color=no --gtest_filter="$filter" > /tmp/$name.log 2>&1
  log "$name exit $?${env:+ ($env)}: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ test' /tmp/$name.log | tr '\n' ' ')"
  grep -E '^\[  FAILED  \]' /tmp/$name.log | sort -u | head -20 | tee -a "$out/summary.txt"
  grep -E '^\[ INFO' /tmp/$name.log | tee -a "$out/summary.txt"
  cat /tmp/$name.log >> "$out/tests.log"
done

# ---- bench kernel, CUDA rows ----------------------------------------------------------------
# Masked-area TFLOP/s against our causal rate: documents (causal and full inside each document)
# and a causal window of 1024. Documents at 128K: LongCA-bench's long-document mix (60% of the
# tokens in documents of 8K..30K); at 16K that mix is one document (its first is longer than T),
# so 16K rows take its corpus part alone (longca_short: 128..8K, log-uniform). DOC_MIX overrides.
kern() {
  local mix=longca_long
  [[ " ${*:2} " == *" --tokens 16384 "* ]] && mix=longca_short
  timeout "$(lh_limit "$1")" "$bin/longhaul" bench kernel --backends cuda --head-dim 128 --sdpa-max-t 4096 \
      --doc-mix "${DOC_MIX:-$mix}" "${@:2}"
}
if section kernel "bench kernel (cuda)"; then
  {
    kern 100 --masks causal causal_documents documents causal_window --tokens 16384 --heads 16 --dtypes bf16 --passes fwd fwd+bwd --iters 10
    echo "# exit $?"
    echo
    kern 100 --masks causal causal_documents documents causal_window --tokens 16384 --heads 64 --kv-heads 8 --dtypes bf16 --passes fwd fwd+bwd --iters 5
    echo "# exit $?"
    echo
    kern 120 --masks causal causal_documents documents causal_window --tokens 131072 --heads 16 --dtypes bf16 --passes fwd fwd+bwd --iters 3
    echo "# exit $?"
    echo
    kern 150 --masks causal causal_documents causal_window --tokens 131072 --heads 64 --kv-heads 8 --dtypes bf16 --passes fwd fwd+bwd --iters 2
    echo "# exit $?"
    echo
    kern 60 --masks causal causal_window --tokens 16384 --heads 16 --dtypes fp32 --passes fwd fwd+bwd --iters 3
    echo "# exit $?"
    echo "# the exact chunked path alone (what float32 windows of ring steps, float64 and striped blocks run)"
    timeout "$(lh_limit 40)" "$bin/longhaul" bench kernel --backends exact_cuda --masks causal causal_window \
        --tokens 16384 --heads 16 --head-dim 128 --dtypes fp32 --passes fwd fwd+bwd --iters 2 --no-sdpa
    echo "# exit $?"
    echo "# the same documents on FlashAttention-2 alone (LONGHAUL_CUDA_VARLEN=flash): what ragged cuDNN changes"
    LONGHAUL_CUDA_VARLEN=flash kern 60 --masks causal causal_documents documents --tokens 16384 --heads 16 --dtypes bf16 --passes fwd fwd+bwd --iters 5
    echo "# exit $?"
    echo "# ragged cuDNN on 1K-square causal pieces (what a causal window of 1024 on cuDNN would run), then FlashAttention-2"
    for varlen in cudnn flash; do
      echo "# LONGHAUL_CUDA_VARLEN=$varlen"
      LONGHAUL_CUDA_VARLEN=$varlen timeout "$(lh_limit 40)" "$bin/longhaul" bench kernel --backends cuda --masks causal_documents \
          --doc-min 1024 --doc-max 1024 --tokens 16384 --heads 16 --head-dim 128 --dtypes bf16 --passes fwd fwd+bwd --iters 5 \
          --sdpa-max-t 4096
      echo "# exit $?"
    done
  } > "$out/kernel_cuda.txt" 2>&1
  log "bench kernel exits: $(grep -E '^# exit' "$out/kernel_cuda.txt" | awk '{print $3}' | tr '\n' ' ')"
fi

# ---- CP emulated on one GPU -----------------------------------------------------------------
if section cp "bench cp-gpu"; then
  {
    # One invocation per P: a bench prints its table when it ends, so a stopped P = 8 keeps P = 4's row.
    for p in 4 8; do
      timeout "$(lh_limit 75)" "$bin/longhaul" bench cp-gpu --ranks $p --tokens 131072 --heads 16 --head-dim 128 --dtype bf16 --strategies ring --iters 3
      echo "# exit $?"
      echo
    done
    timeout "$(lh_limit 100)" "$bin/longhaul" bench cp-gpu --ranks 4 --tokens 131072 --heads 16 --head-dim 128 --dtype bf16 --strategies ulysses tokenring --iters 1
    echo "# exit $?"
  } > "$out/cp_gpu.txt" 2>&1
  log "bench cp-gpu exits: $(grep -E '^# exit' "$out/cp_gpu.txt" | awk '{print $3}' | tr '\n' ' ')"
fi

# ---- one transformer block at 128K tokens on the emulated ring ------------------------------
if section layer "bench layer (cuda)"; then
  timeout "$(lh_limit 150)" "$bin/longhaul" bench layer --device cuda --ranks 1 4 8 --tokens 131072 --dim 2048 --heads 16 --kv-heads 16 \
      --dtype bf16 --strategy ring --layout zigzag --iters 3 > "$out/layer_gpu.txt" 2>&1
  log "bench layer exit $?"
fi

# ---- longhaul train --device cuda -------------------------------------------------------------
if section train "train (cuda)"; then
  # bf16 tokens/s on one GPU at 8K and 32K tokens per sequence (a 4-block, width-1024 model; the
  # embedded recall task, concat sampler); fp64 CUDA = CPU is the TrainCuda tests above. Each run's
  # memory preflight prints the step's peak on the device.
  for lg in 13 15; do
    echo "# longhaul train --device cuda --dtype bf16, sequences of 2^$lg tokens"
    timeout "$(lh_limit 90)" "$bin/longhaul" train --device cuda --dtype bf16 --sampler concat --max-log2 $lg --tokens-per-step 65536 \
        --steps 30 --dim 1024 --layers 4 --heads 8 --kv-heads 8 --workdir /tmp/lh-train-$lg 2>&1 | grep -v '^recall'
    echo "exit ${PIPESTATUS[0]}"
  done > "$out/train_gpu.txt" 2>&1
  log "train: $(grep -h 'tokens/s (after' "$out/train_gpu.txt" | tr '\n' ' ')"
  log "train: $(grep -h 'preflight:' "$out/train_gpu.txt" | cut -c1-160 | tr '\n' ' ')"
fi

# ---- the cuDNN band route, each step in its own process (after the target sections: not a default route) ----
if section band "cuDNN band route (LONGHAUL_CUDA_BAND=cudnn)"; then {
  LONGHAUL_CUDA_BAND=cudnn timeout "$(lh_limit 180)" "$bin/longhaul_gpu_tests" --gtest_color=no --gtest_filter='AttentionCudaBand*' 2>&1
  echo "# exit $?"
  echo "# causal (the yardstick), the causal window of 1024 and documents (their backward on the band graph), LONGHAUL_CUDA_BAND=cudnn"
  LONGHAUL_CUDA_BAND=cudnn kern 100 --masks causal causal_window causal_documents documents --tokens 16384 --heads 16 --dtypes bf16 --passes fwd fwd+bwd --iters 10
  LONGHAUL_CUDA_BAND=cudnn kern 120 --masks causal causal_window causal_documents --tokens 131072 --heads 64 --kv-heads 8 --dtypes bf16 --passes fwd fwd+bwd --iters 2
  echo "# LONGHAUL_CUDA_BAND=auto: its timing line (cuDNN vs FlashAttention-2, 8K tokens) and the verdict it gives"
  LONGHAUL_CUDA_BAND=auto kern 60 --masks causal causal_window --tokens 16384 --heads 16 --dtypes bf16 --passes fwd --iters 3
} > /tmp/band_cuda.txt 2>&1
  { echo "# ---- cuDNN band route (LONGHAUL_CUDA_BAND=cudnn) ----"; cat /tmp/band_cuda.txt; } >> "$out/kernel_cuda.txt"
  log "band: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\]|cuDNN band attention (off|refuses|\(LONGHAUL)' /tmp/band_cuda.txt | tr '\n' ' ')"
fi

# ---- the Python module (built in the background above) on CUDA tensors ---------------------------
if section python "python module (cuda)"; then
  while [ -n "$py_build_pid" ] && kill -0 "$py_build_pid" 2>/dev/null && [ "$(lh_limit 9999 0)" -gt 40 ]; do sleep 2; done
  build_rc=1
  if stop_python_build; then
    log "python: the build did not finish within the budget"
  elif [ -n "$py_build_pid" ]; then
    wait "$py_build_pid"
    build_rc=$?
  fi
  { echo "# the build (background), exit $build_rc:"; tail -40 /tmp/lh-python-build.log; echo; } > "$out/python_gpu.txt"
  if [ $build_rc -ne 0 ]; then
    log "python: no tests, the build did not succeed (exit $build_rc; its tail is in python_gpu.txt)"
  else
    # The fresh extension's own libraries, not the carried ones (LD_LIBRARY_PATH overrides RUNPATH).
    LD_LIBRARY_PATH=${LD_LIBRARY_PATH//"$bundle/lib:"/} OUT=/tmp/lh-python GPU_PYTHON_PHASE=test \
      GPU_PYTHON_BUDGET=$(lh_limit 240 15) timeout "$(lh_limit 250 5)" "$root/scripts/gpu_python.sh" >> "$out/python_gpu.txt" 2>&1
    log "python exit $?: $(tail -3 "$out/python_gpu.txt" | tr '\n' ' ')"
  fi
fi
stop_python_build  # the python section was skipped or not selected
tail -n 12 "$out"/kernel_cuda.txt "$out"/cp_gpu.txt "$out"/layer_gpu.txt "$out"/train_gpu.txt 2>/dev/null | cut -c1-250
# Every target against what was measured, into the summary.
"${LH_PYTHON:-python3}" "$root/scripts/gpu_targets.py" "$out" >> "$out/summary.txt" 2>&1
cat "$out/summary.txt"
