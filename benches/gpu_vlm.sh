#!/usr/bin/env bash
# Cases/s of the candle-vlm backend on a GPU, with a random Qwen3-VL of the 2B model's shapes
# (28 text layers, 2048 wide; 24-block vision tower), bf16, on the 1000-case demo golden set.
# For a machine with an NVIDIA GPU, nvcc and Python 3; the timed part takes well under 5
# minutes (the cuda build before it is a one-off, ~10-20 minutes from clean).
#
#   benches/gpu_vlm.sh                 # batch 8
#   BATCH=16 DEVICE=cuda:1 benches/gpu_vlm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/medgate-gpu-vlm}
VENV=${VENV:-$WORK/venv}
BATCH=${BATCH:-8}
DEVICE=${DEVICE:-cuda:0}
PRECISION=${PRECISION:-bf16}
mkdir -p "$WORK"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/medgate-target}

echo "== build (release, --features cuda)"
cargo build --release --features cuda
MEDGATE=$CARGO_TARGET_DIR/release/medgate

if [ ! -f "$WORK/ckpt/config.json" ]; then
  echo "== random 2B-class Qwen3-VL checkpoint (transformers, seeded)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch transformers safetensors pillow numpy tokenizers
  "$VENV/bin/python" tests/fixtures/vlm/make_fixture.py --big "$WORK/ckpt"
fi

sed -e "s#path: ../tests/fixtures/vlm/tiny-qwen3-vl#path: $WORK/ckpt#" \
    -e "/^  sha256:/d" \
    -e "s#^  device: cpu#  device: $DEVICE#" \
    -e "s#^  precision: f32#  precision: $PRECISION#" \
    -e "s#^  batch_size: 4#  batch_size: $BATCH#" \
    -e "s#path: ../golden-sets/demo-cxr#path: $PWD/golden-sets/demo-cxr#" \
    -e "s#requirements: trace/requirements.yaml#requirements: $PWD/protocols/trace/requirements.yaml#" \
    -e "s#risks: trace/risks.yaml#risks: $PWD/protocols/trace/risks.yaml#" \
    protocols/vlm-inprocess.yaml > "$WORK/protocol.yaml"

echo "== medgate run: 1000 cases, $DEVICE, $PRECISION, batch $BATCH"
rm -rf "$WORK/bundle"
start=$(date +%s.%N)
"$MEDGATE" run "$WORK/protocol.yaml" --out "$WORK/bundle" -q || true  # a random model fails its criteria
end=$(date +%s.%N)
n=$(($(wc -l < golden-sets/demo-cxr/manifest.csv) - 1))
python3 -c "import sys; n,t=int(sys.argv[1]),float(sys.argv[2])-float(sys.argv[3]); print(f'{n} cases in {t:.1f} s: {n/t:.1f} cases/s (includes loading the weights)')" "$n" "$end" "$start"
