#!/bin/bash
# CPU time of rustc compiling one dependency at given opt-levels (README, "First build").
#   benches/unit_cpu.sh SPEC LEVEL...      e.g. benches/unit_cpu.sh hayagriva 3 0
# Needs a built target directory (CARGO_TARGET_DIR or ./target): cargo prints the exact rustc
# command for SPEC (with its environment), which is re-run into a scratch --out-dir with only
# -C opt-level changed, so no artifact in the target directory is replaced (the `--print cfg`
# probe only adds a fingerprint entry of its own). Prints
# "SPEC optN user_sys_wall: USER SYS WALL" (seconds); user + sys is what a loaded 2-core
# machine cannot hide, wall is not comparable between runs on a shared machine.
set -u
cd "$(dirname "$0")/.."
spec=$1; shift
line=$(cargo rustc --locked -p "$spec" --lib -vv -- --print cfg 2>&1 | grep -m1 "Running \`" )
cmd=${line#*Running \`}; cmd=${cmd%\`*}; cmd=${cmd% --print cfg}
# cargo leaves the flag out at opt-level 0: put one in to replace.
case $cmd in *"-C opt-level="*) ;; *) cmd="$cmd -C opt-level=0" ;; esac
for lvl in "$@"; do
  out=$(mktemp -d)
  c=$(echo "$cmd" | sed -E "s# --out-dir [^ ]+# --out-dir $out#; s#-C opt-level=[0-9s]+#-C opt-level=$lvl#; s#--error-format=json --json=[^ ]+##")
  # /usr/bin/time writes its line last on stderr, after rustc's own messages.
  /usr/bin/time -f "%U %S %e" sh -c "$c" >/dev/null 2>"$out/err"
  grep -q '^error' "$out/err" && echo "$spec opt$lvl ERROR: $(grep -m2 '^error' "$out/err")"
  echo "$spec opt$lvl user_sys_wall: $(tail -1 "$out/err")"
  rm -rf $out
done
