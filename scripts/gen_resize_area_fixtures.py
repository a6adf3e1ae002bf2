"""Writes io/tests/data/resize_area/: small 8-bit images and what OpenCV's cv2.resize(INTER_AREA) makes
of them, for the byte-exact test of medico's port (io/src/resize_area.rs). Test helper, not run in CI:
needs `pip install opencv-python-headless numpy` (measured with opencv-python-headless 5.0.0).
Usage: python3 scripts/gen_resize_area_fixtures.py"""
import json, os
import cv2
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "io", "tests", "data", "resize_area")
# (h, w, channels, out_h, out_w): every path OpenCV takes for INTER_AREA.
CASES = [
    (40, 34, 3, 44, 37),    # enlarging both axes (LiteMedSAM's case for small slices)
    (33, 47, 3, 45, 64),    # enlarging, odd sizes
    (20, 12, 1, 51, 31),    # enlarging, one channel
    (64, 64, 3, 32, 32),    # 2x2 blocks, (sum + 2) >> 2
    (48, 40, 1, 24, 20),    # 2x2 blocks, one channel
    (36, 27, 3, 12, 9),     # 3x3 blocks, sum / 9 rounded half to even
    (64, 48, 3, 16, 12),    # 4x4 blocks
    (50, 37, 3, 21, 16),    # shrinking by non-integer factors: area weights
    (61, 64, 3, 32, 30),    # shrinking, nearly 2x
    (40, 30, 3, 20, 45),    # shrinking one axis, enlarging the other (linear path on both)
    (30, 64, 3, 30, 32),    # one axis unchanged, the other halved (block path, 1x2)
    (29, 31, 3, 64, 31),    # one axis unchanged, the other enlarged
]
rng = np.random.default_rng(20261130)
os.makedirs(OUT, exist_ok=True)
index = []
for i, (h, w, cn, oh, ow) in enumerate(CASES):
    if i % 2 == 0:
        img = rng.integers(0, 256, (h, w, cn), dtype=np.uint8)
    else:
        ramp = (np.add.outer(np.arange(h) * 7, np.arange(w) * 5) % 256).astype(np.uint8)
        img = np.repeat(ramp[:, :, None], cn, axis=-1)
    out = cv2.resize(img if cn > 1 else img[:, :, 0], (ow, oh), interpolation=cv2.INTER_AREA)
    name = f"case{i:02d}"
    img.tofile(os.path.join(OUT, name + ".in"))
    out.astype(np.uint8).tofile(os.path.join(OUT, name + ".out"))
    index.append({"name": name, "h": h, "w": w, "channels": cn, "out_h": oh, "out_w": ow})
with open(os.path.join(OUT, "cases.json"), "w") as f:
    json.dump({"opencv": cv2.__version__, "cases": index}, f, indent=1)
print("wrote", len(index), "cases to", OUT)
