#!/usr/bin/env bash
# Installs what longhaul needs and is missing, nothing else. Idempotent: a second run only checks.
#   Debian: Open MPI, HDF5, Boost.ProgramOptions, GoogleTest, OpenBLAS, ccache, ninja, cmake;
#           for the cluster tests iproute2 (network namespaces), Slurm and munge.
#   PyPI:   torch (LibTorch comes from the wheel), numpy, pytest, h5py, wheel, matplotlib, transformers,
#           nvidia-cudnn-frontend (the header-only C++ API of the cuDNN that torch loads).
# torch is pinned to 2.11.0: its PyPI build is for CUDA 13.0, the same CUDA as the toolkit here
# and as the GPU machine's torch, so a process holds one CUDA runtime and one NCCL (torch's).
set -euo pipefail
TORCH_VERSION=2.11.0
CUDNN_FRONTEND_VERSION=1.32.0  # only its C++ headers are used (--no-deps: not its Python runtime); the library is torch's cuDNN
TRANSFORMERS_VERSION=5.24.0  # longhaul.integrations.transformers is tested against this one (5.25 needs a `kernels` this index lacks)
PY=${PYTHON:-python3}

debs=(libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libboost-program-options-dev
      libgtest-dev libopenblas-dev ccache ninja-build cmake g++ pkg-config)
cluster_debs=(iproute2 slurmd slurmctld slurm-client slurm-wlm-basic-plugins munge)  # optional: tests/cluster
missing_debs() { for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"; done; }
apt_install() {
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
mapfile -t missing < <(missing_debs "${debs[@]}")
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  apt_install "${missing[@]}"
fi
mapfile -t missing < <(missing_debs "${cluster_debs[@]}")
if [ ${#missing[@]} -gt 0 ]; then  # without them the cluster tests report SKIPPED with the reason
  echo "setup: installing Debian packages for the cluster tests: ${missing[*]}"
  apt_install "${missing[@]}" || echo "setup: could not install ${missing[*]}; the cluster tests will be skipped"
fi

have_torch=$($PY -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
if [ "$have_torch" != "$TORCH_VERSION" ]; then
  echo "setup: installing torch==$TORCH_VERSION from PyPI (found: ${have_torch:-none})"
  $PY -m pip install -q --root-user-action=ignore "torch==$TORCH_VERSION"
fi
for mod in numpy pytest h5py wheel matplotlib; do  # wheel: `pip install --no-build-isolation .`; matplotlib: benchmarks/plot.py
  $PY -c "import $mod" 2>/dev/null || { echo "setup: installing $mod"; $PY -m pip install -q --root-user-action=ignore "$mod"; }
done
have_tf=$($PY -c 'import transformers; print(transformers.__version__)' 2>/dev/null || true)
if [ "$have_tf" != "$TRANSFORMERS_VERSION" ]; then
  echo "setup: installing transformers==$TRANSFORMERS_VERSION from PyPI (found: ${have_tf:-none})"
  $PY -m pip install -q --root-user-action=ignore "transformers==$TRANSFORMERS_VERSION"
fi
have_cfe=$($PY -c 'import importlib.metadata as m; print(m.version("nvidia-cudnn-frontend"))' 2>/dev/null || true)
if [ "$have_cfe" != "$CUDNN_FRONTEND_VERSION" ]; then
  echo "setup: installing nvidia-cudnn-frontend==$CUDNN_FRONTEND_VERSION from PyPI (found: ${have_cfe:-none})"
  $PY -m pip install -q --root-user-action=ignore --no-deps "nvidia-cudnn-frontend==$CUDNN_FRONTEND_VERSION" ||
    echo "setup: could not install nvidia-cudnn-frontend; the cuDNN band route is left out of the build"
fi
echo "setup: ok (torch $($PY -c 'import torch; print(torch.__version__)'), $(mpirun --version | head -1))"
