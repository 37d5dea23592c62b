#!/usr/bin/env bash
# A token store written to a full disk (a 16 KiB tmpfs): `longhaul prep` and the train command's
# task store fail with the file system's words ("No space left on device"), name the file and
# leave nothing behind, where HDF5 had left a store with holes and reported success (the chunk
# writes happen when a dataset closes, and those were unchecked). Needs root to mount a tmpfs;
# skipped (exit 77) with the reason otherwise.
set -u
longhaul=$1
skip() { echo "SKIPPED: $*"; exit 77; }
dir=$(mktemp -d)
mnt=$dir/full
mkdir -p "$mnt" "$dir/text"
trap 'umount "$mnt" 2>/dev/null; rm -rf "$dir"' EXIT
mount -t tmpfs -o size=16k tmpfs "$mnt" 2>/dev/null || skip "cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)"
fail() { cat "$dir"/*.out; echo "FAIL: $*"; exit 1; }
head -c 150000 /dev/urandom | base64 > "$dir/text/a.txt"  # about 200K byte tokens: far past 16 KiB compressed
expect_full() {  # expect_full NAME: exit status not 0, the disk's words and the file named, nothing left
  local name=$1 rc=$2 file=$3
  [ "$rc" -ne 0 ] || fail "$name: exit 0 on a full disk"
  grep -q "No space left on device" "$dir/$name.out" || fail "$name: the file system's reason is not in the error"
  grep -qF "token store '$file" "$dir/$name.out" || fail "$name: the error does not name $file"
  [ "$(wc -l < "$dir/$name.out")" -le 3 ] || fail "$name: the error is not one line"
  [ -z "$(ls -A "$mnt" | grep -v '^w$')" ] && [ -z "$(ls -A "$mnt/w" 2>/dev/null)" ] || fail "$name: left $(ls -AR "$mnt")"
}
"$longhaul" prep "$dir/text" -o "$mnt/text.h5" > "$dir/prep.out" 2>&1
expect_full prep $? "$mnt/text.h5.tmp."
"$longhaul" train --steps 1 --eval-docs 1 --workdir "$mnt/w" > "$dir/train.out" 2>&1
expect_full train $? "$mnt/w/recall_task.h5"
grep -q "unfinished file was removed" "$dir/train.out" || fail "train: the error does not say the file was removed"
grep -q "wrote the recall task" "$dir/train.out" && fail "train: reported the task written"
echo "store_full_disk: ok"
