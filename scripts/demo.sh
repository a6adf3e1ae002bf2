#!/usr/bin/env bash
# medico's main job on the bundled default, on a fresh machine too. Until the runtime lands this is the
# parity demo: import the reference checkpoints in pure Rust, run the SAM definition on libtorch (CUDA if
# available, else CPU) and compare with the official implementation's outputs.
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
