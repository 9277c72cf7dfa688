#!/usr/bin/env bash
# Times `medgate stats` against the Python stack (pandas + scikit-learn + statsmodels + a
# vectorised fast DeLong) on a 1,000,000-case CSV with three subgroup attributes, as whole
# processes, alternating the two sides; prints median wall times and the ratio.
#
# usage: benches/compare_python.sh [runs=5] [cases=1000000]
# env:   MEDGATE=path/to/medgate (default: builds target/release/medgate with cargo)
#        CPUS=0,1 (pinned with taskset when available, to mimic a 2-core CI machine)
#        SKIP_BOOTSTRAP=1 to skip the bootstrap timing
#        DECIMALS=3 rounds scores (ties); DECIMALS=0 keeps full precision (no ties)
# needs: python3 with numpy pandas scipy scikit-learn statsmodels
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
runs="${1:-5}"
cases="${2:-1000000}"
work="${BENCH_DIR:-${TMPDIR:-/tmp}/medgate-bench}"
mkdir -p "$work"
decimals="${DECIMALS:-3}"
data="$work/cases_${cases}_${decimals}.csv"

if [[ -z "${MEDGATE:-}" ]]; then
  (cd "$here/.." && cargo build --release --quiet)
  target="${CARGO_TARGET_DIR:-$here/../target}"
  MEDGATE="$target/release/medgate"
fi
[[ -f "$data" ]] || python3 "$here/make_data.py" "$data" "$cases" "$decimals"

pin=()
if command -v taskset >/dev/null; then pin=(taskset -c "${CPUS:-0,1}"); fi
attrs=(--subgroup site --subgroup age_band --subgroup manufacturer)

time_cmd() {  # prints wall seconds of "$@"
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

py=(); mg=()
for ((i = 0; i < runs; i++)); do
  mg+=("$(time_cmd "${pin[@]}" "$MEDGATE" stats --input "$data" --label label --score score "${attrs[@]}" --format json)")
  py+=("$(time_cmd "${pin[@]}" python3 "$here/compare_python.py" "$data" 0.5 site age_band manufacturer)")
done
mgm=$(printf '%s\n' "${mg[@]}" | median)
pym=$(printf '%s\n' "${py[@]}" | median)
printf 'cases: %s, runs: %s, cpus: %s\n' "$cases" "$runs" "${CPUS:-0,1}"
printf 'python (pandas+sklearn+statsmodels+fast DeLong): median %.3f s\n' "$pym"
printf 'medgate stats (wilson + delong):                  median %.3f s\n' "$mgm"
printf 'ratio python/medgate: %.1fx (target >= 15x)\n' "$(echo "$pym / $mgm" | bc -l)"

if [[ -z "${SKIP_BOOTSTRAP:-}" ]]; then
  bt=$(time_cmd "${pin[@]}" "$MEDGATE" stats --input "$data" --label label --score score "${attrs[@]}" \
       --interval bootstrap --bootstrap 2000 --format json)
  printf 'medgate stats --interval bootstrap --bootstrap 2000: %.1f s (target < 30 s)\n' "$bt"
fi
