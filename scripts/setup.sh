#!/usr/bin/env bash
# Installs what medico's build and tests need into the git-ignored folder .deps/, from PyPI wheels only:
#   .deps/libtorch      libtorch 2.11.0 (CPU part of the torch wheel + the two small CUDA runtime stubs it links)
#   .deps/onnxruntime   libonnxruntime.so.1.31.1 (from the onnxruntime wheel)
#   .deps/cmake         cmake (from the cmake wheel), used only to build CharLS for DICOM JPEG-LS (feature jpegls)
# Idempotent: a part that is already installed (marker file present) is skipped. Prints what it did.
# Then `source scripts/env.sh` sets LIBTORCH, ORT_DYLIB_PATH and LD_LIBRARY_PATH.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPS="$ROOT/.deps"
TORCH_VERSION=2.11.0
ORT_VERSION=1.31.1
CMAKE_VERSION=3.31.6
mkdir -p "$DEPS"

fetch_wheels() { # DIR PKG==VER...
  local dir=$1; shift
  python3 -m pip download --disable-pip-version-check --no-deps --no-cache-dir --only-binary=:all: -q \
    -d "$dir" "$@"
}

install_libtorch() {
  local dest="$DEPS/libtorch"
  if [ -f "$dest/.installed-$TORCH_VERSION" ]; then
    echo "setup: libtorch $TORCH_VERSION already in $dest"
    return
  fi
  echo "setup: downloading torch==$TORCH_VERSION + CUDA runtime stubs from PyPI (~540 MB)..."
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  rm -rf "$dest"
  fetch_wheels "$tmp" "torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  python3 - "$tmp" "$dest" "$TORCH_VERSION" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dest, version = sys.argv[1:4]
want_lib = {"libtorch_cpu.so", "libc10.so", "libtorch.so", "libgomp.so.1", "libcudart.so.13", "libcupti.so.13"}
for whl in glob.glob(os.path.join(tmp, "*.whl")):
    with zipfile.ZipFile(whl) as z:
        for info in z.infolist():
            name, base = info.filename, os.path.basename(info.filename)
            if name.startswith("torch/include/") and not name.endswith("/"):
                out = os.path.join(dest, name[len("torch/"):])
            elif base in want_lib and "/lib/" in name:
                out = os.path.join(dest, "lib", base)
            else:
                continue
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
            if "/lib/" in out:
                os.chmod(out, 0o755)
with open(os.path.join(dest, "build-version"), "w") as f:
    f.write(version + "\n")
PY
  touch "$dest/.installed-$TORCH_VERSION"
  echo "setup: libtorch $TORCH_VERSION installed in $dest ($(du -sh "$dest" | cut -f1))"
}

install_onnxruntime() {
  local dest="$DEPS/onnxruntime"
  if [ -f "$dest/.installed-$ORT_VERSION" ]; then
    echo "setup: onnxruntime $ORT_VERSION already in $dest"
    return
  fi
  echo "setup: downloading onnxruntime==$ORT_VERSION from PyPI..."
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  rm -rf "$dest"; mkdir -p "$dest/lib"
  fetch_wheels "$tmp" "onnxruntime==$ORT_VERSION"
  python3 - "$tmp" "$dest/lib" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dest = sys.argv[1:3]
found = False
for whl in glob.glob(os.path.join(tmp, "*.whl")):
    with zipfile.ZipFile(whl) as z:
        for info in z.infolist():
            base = os.path.basename(info.filename)
            if base.startswith("libonnxruntime.so"):
                with z.open(info) as src, open(os.path.join(dest, base), "wb") as dst:
                    shutil.copyfileobj(src, dst)
                found = True
if not found:
    sys.exit("setup: no libonnxruntime.so in the onnxruntime wheel")
PY
  (cd "$dest/lib" && for f in libonnxruntime.so.*; do ln -sf "$f" libonnxruntime.so; break; done)
  touch "$dest/.installed-$ORT_VERSION"
  echo "setup: onnxruntime $ORT_VERSION installed in $dest"
}

install_cmake() {
  local dest="$DEPS/cmake"
  if [ -f "$dest/.installed-$CMAKE_VERSION" ]; then
    echo "setup: cmake $CMAKE_VERSION already in $dest"
    return
  fi
  echo "setup: installing cmake==$CMAKE_VERSION from PyPI..."
  rm -rf "$dest"
  python3 -m pip install --disable-pip-version-check --no-cache-dir --only-binary=:all: -q \
    --target "$dest" "cmake==$CMAKE_VERSION"
  touch "$dest/.installed-$CMAKE_VERSION"
  echo "setup: cmake $CMAKE_VERSION installed in $dest"
}

install_libtorch
install_onnxruntime
install_cmake
echo "setup: done; run 'source scripts/env.sh' to use it"
