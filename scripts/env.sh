# Source this file: points cargo and the binaries at the libraries scripts/setup.sh installed.
_medico_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export LIBTORCH="$_medico_root/.deps/libtorch"
export ORT_DYLIB_PATH="$_medico_root/.deps/onnxruntime/lib/libonnxruntime.so"
export LD_LIBRARY_PATH="$LIBTORCH/lib:$_medico_root/.deps/onnxruntime/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# cmake from the PyPI wheel (builds CharLS for the jpegls feature): the wheel's own binary, no Python launcher.
export PATH="$_medico_root/.deps/cmake/cmake/data/bin:$PATH"
# LiteMedSAM's real checkpoint (scripts/setup.sh), used by the parity tests and the demo.
export MEDICO_LITEMEDSAM_CHECKPOINT="$_medico_root/.deps/litemedsam/lite_medsam.pth"
# MONAI Label's clients (scripts/setup.sh), which the server's tests drive `medico-cli serve` with.
export MEDICO_MONAILABEL_CLIENT="$_medico_root/.deps/monailabel-client"
unset _medico_root
