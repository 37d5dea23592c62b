#!/usr/bin/env bash
# Usage: pip_install.sh SOURCE_DIR PYTHON [CMAKE_BUILD_DIR]
# What a newcomer does: copies the sources as a fresh clone has them (tracked files and untracked
# ones git does not ignore: no build-pip/, no build/), makes a new virtual environment that sees
# the installed torch, `pip install --no-build-isolation <copy>[transformers]` without any
# package index, then imports longhaul and longhaul.integrations.transformers there (from the
# venv, not the build tree) and runs one attention call. CMAKE_BUILD_DIR, when given, is reused
# through LONGHAUL_CMAKE_BUILD so that the libraries are not compiled a second time.
# Exit 77 (skipped) where transformers is not installed.
set -euo pipefail
src=$(cd "$1" && pwd) python=$2 build=${3:-}
if ! "$python" -c "import transformers" 2>/dev/null; then
  echo "SKIPPED: transformers is not installed for $python (scripts/setup.sh installs it)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
if git -C "$src" rev-parse --show-toplevel >/dev/null 2>&1; then
  (cd "$src" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$src" && xargs -0 cp --parents -t "$work/src" 2>/dev/null || true)
else
  tar -C "$src" --exclude='./build*' --exclude='./.git' -cf - . | tar -C "$work/src" -xf -
fi
test -f "$work/src/setup.py" || { echo "the copy of $src has no setup.py"; exit 1; }
test ! -e "$work/src/build-pip" || { echo "the copy is not clean: it has build-pip/"; exit 1; }

"$python" -m venv --system-site-packages "$work/venv"
export LONGHAUL_CMAKE_BUILD=${build:+$(cd "$build" && pwd)}
[ -n "$LONGHAUL_CMAKE_BUILD" ] || unset LONGHAUL_CMAKE_BUILD
unset PYTHONPATH
"$work/venv/bin/pip" install -q --no-index --no-build-isolation "$work/src[transformers]"
cd "$work"  # not the sources: the import must find the installed package
"$work/venv/bin/python" - "$work/venv" <<'PY'
import os
import sys

import torch

import longhaul
import longhaul.integrations.transformers as lht
from transformers import AttentionInterface

venv = os.path.realpath(sys.argv[1])
where = os.path.realpath(longhaul.__file__)
assert where.startswith(venv), f"longhaul imported from {where}, not from the venv {venv}"
assert "longhaul" in AttentionInterface(), "attn_implementation 'longhaul' is not registered"
cp = longhaul.ContextParallel("ring", "zigzag")
q = torch.randn(40, 2, 8, dtype=torch.float64)
plan = cp.plan(40)
out = cp.attention(q, q, q, plan, causal=True)
assert out.shape == (40, 2, 8) and torch.isfinite(out).all()
print(f"pip install: longhaul {longhaul.__version__} from {os.path.dirname(where)}; integration {lht.NAME!r} registered")
PY
