#!/usr/bin/env bash
# medico's main job on the bundled default, on a fresh machine too. Until a trained model lands this is the
# parity demo: import the reference checkpoints in pure Rust, run the SAM definition on libtorch (CUDA if
# available, else CPU) and compare with the official implementation's outputs; then export the `small`
# reference to an ONNX bundle and segment its reference image with a box, on ONNX Runtime and on tract.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SHARED=${MEDICO_SHARED:-$ROOT/../shared}
bash scripts/setup.sh
# shellcheck source=env.sh
source scripts/env.sh
cargo build --release --quiet -p medico-cli --features torch
./target/release/medico-cli checkpoint info "$SHARED/reference/small/weights.safetensors"
./target/release/medico-cli parity --device auto \
  --reference "$SHARED/reference/tiny" --reference "$SHARED/reference/small" "$@"
OUT=$ROOT/target/demo
./target/release/medico-cli export --checkpoint "$SHARED/reference/small/weights.safetensors" --out "$OUT/small-bundle" --force
for backend in ort tract; do
  ./target/release/medico-cli segment "$SHARED/reference/small/image.png" --model "$OUT/small-bundle" \
    --box 60,96,210,307 --backend "$backend" -o "$OUT/small-box-$backend.png"
done
