#!/usr/bin/env bash
# Builds a newer libhdf5 (1.14.6, the C library alone, shared) from Debian's source package and
# prints its install prefix. Debian 12 ships libhdf5 1.10.8, which crashes on some corrupt files
# (tests/fuzz/hdf5_crashes); the in-process token-store fuzz target (scripts/fuzz.sh token_store)
# links this one instead, so that what it finds is ours. The product itself builds against the
# system's libhdf5 and reads stores from elsewhere in a verifying child (data/hdf5/store_verify.h).
#   scripts/hdf5_newer.sh [PREFIX]      default PREFIX: build-hdf5/install; idempotent
# The source comes from Debian's archive (unstable's pool), checked against the SHA-256 that
# Debian's Sources index publishes for it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=1.14.6
tarball=hdf5_${version}+repack.orig.tar.gz
sha256=c18bc47d07f76a5c2cfb70773bfe4152857e48ca4c96e7aef2684c96fa0e6a7c
url=${HDF5_SOURCE_URL:-http://deb.debian.org/debian/pool/main/h/hdf5/hdf5_${version}%2Brepack.orig.tar.gz}
work=$root/build-hdf5
prefix=${1:-$work/install}
if [ -f "$prefix/lib/libhdf5.so" ] && grep -q "HDF5 Version: $version" "$prefix/lib/libhdf5.settings" 2>/dev/null; then
  echo "$prefix"
  exit 0
fi
mkdir -p "$work"
if [ ! -f "$work/$tarball" ] || ! echo "$sha256  $work/$tarball" | sha256sum -c --status; then
  echo "hdf5_newer: downloading $url" >&2
  curl -fsSL -o "$work/$tarball" "$url" || { echo "hdf5_newer: cannot download $url" >&2; exit 2; }
  echo "$sha256  $work/$tarball" | sha256sum -c --status ||
    { echo "hdf5_newer: $tarball does not match its SHA-256 ($sha256)" >&2; exit 2; }
fi
src=$work/hdf5-${version}+repack
[ -d "$src" ] || tar -xzf "$work/$tarball" -C "$work"
echo "hdf5_newer: building libhdf5 $version into $prefix (about a minute on 2 cores)" >&2
# Plain, uninstrumented, like the system library it stands in for: only longhaul's code carries
# the sanitizers and the fuzzer's coverage.
cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DBUILD_SHARED_LIBS=ON -DBUILD_STATIC_LIBS=OFF -DBUILD_TESTING=OFF -DHDF5_BUILD_TOOLS=OFF \
  -DHDF5_BUILD_HL_LIB=OFF -DHDF5_BUILD_CPP_LIB=OFF -DHDF5_BUILD_FORTRAN=OFF -DHDF5_BUILD_JAVA=OFF \
  -DHDF5_BUILD_EXAMPLES=OFF -DHDF5_ENABLE_Z_LIB_SUPPORT=ON -DHDF5_ENABLE_SZIP_SUPPORT=OFF >"$work/configure.log" 2>&1 ||
  { echo "hdf5_newer: configure failed, see $work/configure.log" >&2; exit 1; }
cmake --build "$work/build" --target install >"$work/build.log" 2>&1 ||
  { echo "hdf5_newer: build failed, see $work/build.log" >&2; exit 1; }
echo "$prefix"
