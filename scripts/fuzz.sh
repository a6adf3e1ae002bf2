#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz, on the nightly toolchain) of every reader of
# untrusted files: NIfTI (.nii, and .nii.gz with the input gzipped first), NRRD, DICOM, PNG/TIFF, checkpoints
# (safetensors, PyTorch zip, legacy pickle, then architecture inference), model.json (Bundle::open),
# prompts files and embedding-cache files. Not part of CI; run it by hand:
#
#   bash scripts/fuzz.sh [RUNS] [TARGET...]     # default: 1000000 executions of every target
#
# Limits: -rss_limit_mb=512 and -malloc_limit_mb=512 (no input of these sizes deserves more), -timeout=10
# (a hang), inputs up to max_len bytes (per target below). Seeds: fuzz/seeds/ (small files made for it) and the
# shared data (DICOM files, PNG slices, medico-tiny's model.json) and test fixtures. Findings land in
# fuzz/artifacts/TARGET/; copy each into io/tests/data/fuzz/TARGET/ (or the crate's fixture folder) so the
# ordinary tests replay it. Logs with libFuzzer's final stats: fuzz/logs/TARGET.log.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${MEDICO_SHARED:-$ROOT/../shared}
RUNS=${1:-1000000}
shift || true
ALL=(nifti nifti_gz nrrd dicom image2d checkpoint manifest prompts embedding_cache)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
cd "$ROOT/fuzz"
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked

max_len() {
  case $1 in
    dicom) echo 32768 ;;
    nifti | checkpoint) echo 65536 ;;
    image2d) echo 16384 ;;
    # The input is gzipped on every run: headers and small volumes keep it fast.
    nifti_gz) echo 2048 ;;
    manifest) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

# Build flags per target. DICOM is built without debug assertions (-O): openjp2 0.6.1, dicom-rs's pure-Rust
# JPEG 2000 decoder, frees never-decoded code blocks with `dealloc(null, ..)` even on valid files (the shared
# MR_small_jp2klossless.dcm), which the standard library's debug UB checks abort on; a release build (what
# medico ships) passes the null pointer to free(), which ignores it. With the checks on, every JPEG 2000 input
# would stop the run at once.
build_flags() {
  case $1 in
    dicom) echo "-O --target-dir target/no-debug-assertions" ;;
    *) echo "" ;;
  esac
}

# Seeds for a target, copied into its corpus folder (git-ignored; kept between runs).
seed() {
  local target=$1 corpus=corpus/$1
  mkdir -p "$corpus"
  case $target in
    nifti | nifti_gz)
      cp seeds/nifti/* "$corpus"/
      for f in "$SHARED"/data/nifti_odd/*.nii.gz; do
        # The first 64 kB only (the fuzzer reads no more); gzip stops on the closed pipe.
        (gzip -dc "$f" || true) | head -c 65536 >"$corpus/$(basename "$f" .gz)"
      done ;;
    dicom)
      find "$SHARED/data/dicom" -type f -exec cp {} "$corpus"/ \;
      cp "$ROOT"/io/tests/data/dicom_corrupt/*.dcm "$corpus"/ ;;
    image2d)
      cp seeds/image2d/* "$SHARED"/data/slices2d/*.png "$SHARED"/data/masks2d/*.png "$corpus"/ ;;
    checkpoint) cp seeds/checkpoint/* "$corpus"/ ;;
    manifest) cp "$ROOT/models/medico-tiny/bundle/model.json" "$corpus"/ ;;
    prompts) cp seeds/prompts/* "$corpus"/ ;;
    nrrd) cp seeds/nrrd/* "$corpus"/ ;;
    embedding_cache) printf 'MDEMB01\n\001\000\000\000\004\000\000\000\000\000\000\000' >"$corpus/header" ;;
  esac
}

mkdir -p logs
# A small AddressSanitizer quarantine, so that the RSS limit measures what the readers hold, not freed memory
# ASan keeps poisoned (256 MB by default).
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=16:detect_leaks=0}
for target in "${TARGETS[@]}"; do
  seed "$target"
  echo "fuzz: $target, $RUNS runs"
  # shellcheck disable=SC2046
  cargo +nightly fuzz run $(build_flags "$target") "$target" "corpus/$target" -- \
    -runs="$RUNS" -rss_limit_mb=512 -malloc_limit_mb=512 -timeout=10 -max_len="$(max_len "$target")" \
    -print_final_stats=1 >"logs/$target.log" 2>&1 || echo "fuzz: $target stopped on a finding (see logs/$target.log, artifacts/$target/)"
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov: " "logs/$target.log" | tail -3
done
