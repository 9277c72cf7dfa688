#!/usr/bin/env bash
# `medgate monitor` on a 10-million-row production log (target: < 10 s, one pass).
#
#   benches/monitor_10m.sh [ROWS]          # default 10000000
#   MEDGATE=/path/to/release/medgate benches/monitor_10m.sh
#
# Needs a release build (the dev profile leaves medgate's own code unoptimised) and the demo
# baseline bundle (`medgate run protocols/demo-cxr.yaml --out runs/demo-monitor-base`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-10000000}
MEDGATE=${MEDGATE:-}
if [ -z "$MEDGATE" ]; then
  cargo build --release
  MEDGATE=${CARGO_TARGET_DIR:-target}/release/medgate
fi
[ -d runs/demo-monitor-base ] || "$MEDGATE" run protocols/demo-cxr.yaml --out runs/demo-monitor-base
LOG=runs/bench-$ROWS.csv
[ -f "$LOG" ] || python3 benches/monitor_make_log.py "$ROWS" "$LOG"
# A plan with large windows (10 000 cases), as a 10M-row log would be monitored.
sed 's/cases: 200$/cases: 10000/' protocols/demo-monitor.yaml > runs/bench-monitor.yaml
cp runs/bench-monitor.yaml protocols/.bench-monitor.yaml
trap 'rm -f protocols/.bench-monitor.yaml' EXIT
/usr/bin/time -v "$MEDGATE" monitor protocols/.bench-monitor.yaml --baseline runs/demo-monitor-base \
  --log "$LOG" --out runs/bench-monitor --no-pdf -q 2>&1 | grep -E "ALARM|in control|Elapsed|Maximum resident" || true
