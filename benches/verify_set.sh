#!/usr/bin/env bash
# Benchmark: `medgate verify-set` against `sha256sum` over the same files.
#
# Target (issue 4): on a set of 10,000 files and 1 GB, verify-set reaches at least 80% of
# sha256sum's throughput on one core, and beats it with 2 cores.
#
# Usage: benches/verify_set.sh [FILES] [TOTAL_MB] [MEDGATE_BIN]
#   defaults: 10000 files, 1024 MB, target/release/medgate if built, else the debug binary.
# The set is written under ${BENCH_DIR:-/tmp/medgate-bench} and reused between runs.
# Each timing is taken after one warm-up pass, so both tools read from the page cache and
# the comparison is of hashing, not of the disk. RAYON_NUM_THREADS pins medgate's cores;
# sha256sum is single-threaded by nature.
set -euo pipefail
FILES=${1:-10000}
TOTAL_MB=${2:-1024}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${3:-}
if [[ -z "$BIN" ]]; then
  if [[ -x "$TARGET/release/medgate" ]]; then BIN="$TARGET/release/medgate"; else BIN="$TARGET/debug/medgate"; fi
fi
DIR=${BENCH_DIR:-/tmp/medgate-bench}/set-$FILES-$TOTAL_MB
if [[ ! -f "$DIR/LOCK" ]]; then
  rm -rf "$DIR"; mkdir -p "$DIR/images"
  SIZE_KB=$(( TOTAL_MB * 1024 / FILES ))
  echo "writing $FILES files of $SIZE_KB KiB to $DIR" >&2
  echo "case_id,image,finding" > "$DIR/manifest.csv"
  for i in $(seq 1 "$FILES"); do
    head -c "$((SIZE_KB * 1024))" /dev/urandom > "$DIR/images/$i.bin"
    echo "c$i,images/$i.bin,$((i % 2))" >> "$DIR/manifest.csv"
  done
  "$BIN" lock "$DIR" --note benchmark -q >/dev/null
fi
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
cd "$DIR"
LIST=$(find . -type f ! -name LOCK | sort)
echo $LIST | xargs sha256sum >/dev/null  # warm the cache
T_SHA=$(secs sh -c "echo \"$LIST\" | xargs sha256sum")
T_1=$(RAYON_NUM_THREADS=1 secs "$BIN" verify-set "$DIR" -q)
T_2=$(RAYON_NUM_THREADS=2 secs "$BIN" verify-set "$DIR" -q)
BYTES=$(du -sb --apparent-size "$DIR" | cut -f1)
printf 'files %s, bytes %s, binary %s\n' "$FILES" "$BYTES" "$BIN"
printf 'sha256sum (1 core)        %6.2f s  %7.1f MB/s\n' "$T_SHA" "$(echo "$BYTES/$T_SHA/1000000" | bc -l)"
printf 'verify-set (1 thread)     %6.2f s  %7.1f MB/s  %5.0f%% of sha256sum (target >= 80%%)\n' "$T_1" "$(echo "$BYTES/$T_1/1000000" | bc -l)" "$(echo "100*$T_SHA/$T_1" | bc -l)"
printf 'verify-set (2 threads)    %6.2f s  %7.1f MB/s  %5.0f%% of sha256sum (target > 100%%)\n' "$T_2" "$(echo "$BYTES/$T_2/1000000" | bc -l)" "$(echo "100*$T_SHA/$T_2" | bc -l)"
