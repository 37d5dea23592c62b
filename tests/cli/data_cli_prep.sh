#!/usr/bin/env bash
# Usage: data_cli_prep.sh LONGHAUL OUTDIR. Runs `longhaul prep` on generated inputs: the good case
# leaves OUTDIR/store.h5 for data_h5py_read; the bad cases must fail with their message.
set -euo pipefail
bin=$1 out=$2
rm -rf "$out"
mkdir -p "$out/in/sub" "$out/in/site-packages"
printf 'hello world\n' > "$out/in/a.txt"
printf 'second document' > "$out/in/sub/b.txt"
: > "$out/in/sub/empty.txt"
printf 'not walked' > "$out/in/site-packages/c.txt"
printf 'ignored by the glob' > "$out/in/readme.md"
printf '{"text": "json one"}\n{"body": "no text field"}\n{"text": "json two"}\n' > "$out/docs.jsonl"

fail() { echo "data_cli_prep: $*" >&2; exit 1; }

log=$("$bin" prep "$out/in" "$out/docs.jsonl" -o "$out/store.h5" --glob '*.txt' --exclude-dir site-packages 2>&1) \
  || fail "prep failed: $log"
echo "$log"
grep -q '4 documents' <<<"$log" || fail "expected 4 documents in the summary"
grep -q '1  empty file' <<<"$log" || fail "expected the empty file counted"
grep -q "1  jsonl: field missing ('text')" <<<"$log" || fail "expected the record without text counted"
grep -q 'document lengths' <<<"$log" || fail "expected the length histogram"
[ -f "$out/store.h5" ] || fail "no store written"

json=$("$bin" prep "$out/in/a.txt" -o "$out/one.h5" --json) || fail "prep --json failed"
grep -q '"documents": 1' <<<"$json" || fail "prep --json: expected \"documents\": 1, got $json"

# Bad inputs: a clear message and a non-zero exit, and no output file left behind.
expect_fail() {
  local want=$1; shift
  local msg
  if msg=$("$bin" "$@" 2>&1); then fail "'$*' succeeded, expected an error"; fi
  grep -qF -- "$want" <<<"$msg" || fail "'$*': expected '$want' in: $msg"
}
expect_fail "does not exist" prep "$out/missing.txt" -o "$out/bad.h5"
expect_fail "no input files found" prep "$out/in/sub" -o "$out/bad.h5" --glob '*.nothing'
expect_fail "hold no document" prep "$out/in/sub/empty.txt" -o "$out/bad.h5"
expect_fail "unknown input format" prep "$out/in" -o "$out/bad.h5" --format xml
expect_fail "-o" prep "$out/in"
[ ! -e "$out/bad.h5" ] || fail "a failed prep left $out/bad.h5"
echo "data_cli_prep: ok"
