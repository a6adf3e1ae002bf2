#!/usr/bin/env bash
# Runs every check medico has, on a fresh machine too: installs the native dependencies (scripts/setup.sh),
# then formatting, clippy and all tests of every crate (libtorch parity tests included) and of the web annotator.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
# shellcheck source=env.sh
source scripts/env.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings
cargo test --workspace --all-features -- --show-output
# The web annotator's modules that need no browser (the browser test is cli/tests/cli/annotator_browser.rs).
node --test web/tests/unit.mjs
# Cohort segmentation on a real one-node Slurm (installed by setup.sh): a job array equals one process, and a
# cancelled array resubmitted redoes nothing (docs/scale.md).
MODEL=medico-tiny MEDICO_CLI="$ROOT/target/debug/medico-cli" bash scripts/slurm/check_batch_array.sh "$ROOT/target/slurm-check"
# Data-parallel training under torchrun (installed by setup.sh): two ranks train the model one process trains, and
# a killed rank stops the other (docs/scale.md).
MEDICO_CLI="$ROOT/target/debug/medico-cli" bash scripts/distributed/check_torchrun_training.sh "$ROOT/target/torchrun-check"
