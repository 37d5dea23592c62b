#!/usr/bin/env bash
# The one script a session lent a GPU runs there (device tool, repository root, carry
# .gpu-bundle made by scripts/pack_gpu_bundle.sh). It uses the carried binaries against that
# machine's torch 2.11 libraries, or, if they cannot start, builds there for sm_90a against
# that torch. Then: the `gpu` tests, the CUDA rows of `bench kernel`, `bench cp-gpu` (P
# thread-ranks emulated on the one GPU) and `bench layer` (one transformer block at 128K tokens on
# that emulated ring). Everything lands in $OUT (at most 8 files).
# Sized for ≤ 8 minutes; each step has its own time limit and a failed step does not stop the others.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/gpu-check-out}
mkdir -p "$out"
bundle=$root/.gpu-bundle
log() { echo "== $(date +%T) $*" | tee -a "$out/summary.txt"; }
# GPU_CHECK_ONLY="tests layer" runs only those sections (tests, kernel, cp, layer) for a quick rerun.
want() { [ -z "${GPU_CHECK_ONLY:-}" ] || [[ " $GPU_CHECK_ONLY " == *" $1 "* ]]; }

# ---- the machine ----------------------------------------------------------------------------
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "nccl", torch.cuda.nccl.version())'
  nvcc --version | tail -1
  uname -r; nproc
  cat "$bundle/commit" 2>/dev/null
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

torch_lib=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
site=$(dirname "$(dirname "$torch_lib")")
nvidia_libs=$(find "$site/nvidia" -maxdepth 3 -type d -name lib 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="$bundle/lib:$torch_lib:${nvidia_libs}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"

bin=$bundle/bin
if ! "$bin/longhaul" info > "$out/info.txt" 2>&1; then
  log "carried binaries do not start ($(tail -1 "$out/info.txt")); building here for sm_90a"
  deps=/tmp/lh-deps && mkdir -p $deps
  for f in "$bundle"/debs/*.deb; do dpkg -x "$f" $deps; done
  build=/tmp/lh-build
  timeout 420 cmake -S "$root" -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
      -DLONGHAUL_WITH_MPI=OFF -DLONGHAUL_WITH_HDF5=OFF -DCMAKE_PREFIX_PATH="$deps/usr" \
      -DBoost_INCLUDE_DIR=$deps/usr/include -DGTEST_ROOT=$deps/usr > "$out/build.log" 2>&1 &&
    timeout 420 cmake --build $build -j "$(nproc)" >> "$out/build.log" 2>&1 || { log "build failed"; tail -30 "$out/build.log"; }
  export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu:$LD_LIBRARY_PATH"
  mkdir -p /tmp/lh-bin && cp $build/cli/longhaul $build/tests/longhaul_gpu_tests /tmp/lh-bin/ 2>/dev/null
  bin=/tmp/lh-bin
  "$bin/longhaul" info > "$out/info.txt" 2>&1 || log "longhaul does not start: $(tail -2 "$out/info.txt")"
fi
log "longhaul info: $(tail -1 "$out/info.txt")"

# ---- gpu tests ------------------------------------------------------------------------------
want tests && log "gpu tests"
# NCCL's tests apart and last: its deadline test aborts a communicator with work queued.
want tests && for part in "gpu_tests:-Nccl*" "nccl_tests:Nccl*"; do
  name=${part%%:*}
  timeout 300 "$bin/longhaul_gpu_tests" --gtest_color=no --gtest_filter="${part#*:}" > "$out/$name.log" 2>&1
  log "$name exit $?: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ test' "$out/$name.log" | tr '\n' ' ')"
  grep -E '^\[  FAILED  \]' "$out/$name.log" | sort -u | head -20 | tee -a "$out/summary.txt"
done

# ---- bench kernel, CUDA rows ----------------------------------------------------------------
want kernel && log "bench kernel (cuda)" && {
  timeout 150 "$bin/longhaul" bench kernel --backends cuda --masks causal full --tokens 4096 16384 --heads 16 --head-dim 128 \
      --dtypes bf16 --passes fwd fwd+bwd --warmup 3 --iters 30
  echo
  timeout 90 "$bin/longhaul" bench kernel --backends cuda --masks causal documents causal_window --tokens 16384 --heads 16 \
      --head-dim 128 --dtypes bf16 fp16 fp32 --passes fwd fwd+bwd --sdpa-max-t 4096
  echo
  # Every long-context family through the slice planner (bf16 fused, fp32 exact paths).
  timeout 120 "$bin/longhaul" bench kernel --backends cuda --masks causal full_document share_question causal_blockwise \
      prefix_lm_causal prefix_lm_document sliding_window sliding_window_causal global_sliding_window block_causal_document \
      --tokens 16384 --heads 16 --head-dim 128 --dtypes bf16 --passes fwd fwd+bwd --sdpa-max-t 4096
} > "$out/kernel_cuda.txt" 2>&1 && log "bench kernel exit 0" || { want kernel && log "bench kernel failed"; }

# ---- CP emulated on one GPU -----------------------------------------------------------------
want cp && log "bench cp-gpu" && {
  timeout 150 "$bin/longhaul" bench cp-gpu --ranks 4 8 --tokens 32768 --heads 16 --head-dim 128 --dtype bf16 --iters 3
  echo
  timeout 150 "$bin/longhaul" bench cp-gpu --ranks 4 8 --tokens 131072 --heads 16 --head-dim 128 --dtype bf16 --strategies ring --iters 2
} > "$out/cp_gpu.txt" 2>&1 && log "bench cp-gpu exit 0" || { want cp && log "bench cp-gpu failed"; }
# ---- one transformer block at 128K tokens on the emulated ring ------------------------------
if want layer; then
  log "bench layer (cuda)"
  timeout 200 "$bin/longhaul" bench layer --device cuda --ranks 1 4 8 --tokens 131072 --dim 2048 --heads 16 --kv-heads 16 \
      --dtype bf16 --strategy ring --layout zigzag --iters 3 > "$out/layer_gpu.txt" 2>&1
  log "bench layer exit $?"
fi
tail -n 30 "$out"/kernel_cuda.txt "$out"/cp_gpu.txt "$out"/layer_gpu.txt 2>/dev/null
