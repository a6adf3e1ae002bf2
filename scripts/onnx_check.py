#!/usr/bin/env python3
"""Optional helper (not run in CI): validates every graph of a medico bundle with the `onnx` package's
full checker (shape inference included) and checks model.json's checksums.

    python3 -m pip install onnx==1.23.2
    python3 scripts/onnx_check.py BUNDLE_DIR
"""
import hashlib
import json
import sys
from pathlib import Path

import onnx


def main(bundle: Path) -> int:
    manifest = json.loads((bundle / "model.json").read_text())
    failures = 0
    for name, entry in manifest["files"].items():
        path = bundle / name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        model = onnx.load(str(path))
        try:
            onnx.checker.check_model(model, full_check=True)
            status = "ok"
        except onnx.checker.ValidationError as e:
            status = f"INVALID: {e}"
            failures += 1
        if digest != entry["sha256"]:
            status += " (checksum mismatch)"
            failures += 1
        opsets = [(o.domain or "ai.onnx", o.version) for o in model.opset_import]
        print(f"{name}: ir {model.ir_version}, opset {opsets}, {len(model.graph.node)} nodes: {status}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
