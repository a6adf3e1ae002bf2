#!/usr/bin/env bash
# medico's main job on the bundled default, on a fresh machine too. Until a trained model lands this is the
# parity demo: import the reference checkpoints in pure Rust, run the SAM definition on libtorch (CUDA if
# available, else CPU) and compare with the official implementation's outputs; then export the `small`
# reference to an ONNX bundle and segment its reference image with a box, on ONNX Runtime and on tract; then
# DICOM input with a CT window, a preview and propagation through a series.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SHARED=${MEDICO_SHARED:-$ROOT/../shared}
bash scripts/setup.sh
# shellcheck source=env.sh
source scripts/env.sh
cargo build --release --quiet -p medico-cli --features torch,jpegls
./target/release/medico-cli checkpoint info "$SHARED/reference/small/weights.safetensors"
./target/release/medico-cli parity --device auto \
  --reference "$SHARED/reference/tiny" --reference "$SHARED/reference/small" "$@"
OUT=$ROOT/target/demo
./target/release/medico-cli export --checkpoint "$SHARED/reference/small/weights.safetensors" --out "$OUT/small-bundle" --force
for backend in ort tract; do
  ./target/release/medico-cli segment "$SHARED/reference/small/image.png" --model "$OUT/small-bundle" \
    --box 60,96,210,307 --backend "$backend" -o "$OUT/small-box-$backend.png"
done
# Medical input: describe and segment a DICOM CT slice (CT window) with a preview, and propagate through the
# 5-file CT series (slice embeddings cached under target/demo/cache).
./target/release/medico-cli info "$SHARED/data/dicom/CT_small.dcm"
./target/release/medico-cli segment "$SHARED/data/dicom/CT_small.dcm" --model "$OUT/small-bundle" \
  --box 30,30,100,100 --intensity ct-abdomen --preview "$OUT/ct-preview.png" -o "$OUT/ct-mask.nii.gz"
./target/release/medico-cli segment "$SHARED/data/dicom/series_ct5n" --model "$OUT/small-bundle" \
  --box 1,1,15,15 --propagate --cache-dir "$OUT/cache" -o "$OUT/series-mask.nii.gz"
