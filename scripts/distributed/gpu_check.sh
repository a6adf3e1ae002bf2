#!/usr/bin/env bash
# One-shot data-parallel check for a GPU machine (the `device` machine: PyTorch 2.11.0+cu130 in /opt/torch/.venv,
# no Rust, no internet). Build here, carry the binary, run it there:
#   cargo build --release -p medico-cli --features torch
#   run: bash scripts/distributed/gpu_check.sh    (carry: target/release/medico-cli)
# 1. parity on CUDA: 3 steps of the same run on the CPU and on CUDA (weights within 1e-4);
# 2. where the machine has two GPUs or more: torchrun --nproc-per-node 2 on CUDA (c10d Gloo all-reducing CUDA
#    tensors; NCCL is not built into the shim yet) equals one CUDA process (weights within 1e-4);
# 3. step time of SAM ViT-B training (batch 2, 8 rounds, 1024 px) in medico against the same step in PyTorch eager
#    (segment_anything's model, when the venv has it), in the same run on the same GPU.
# Results under $OUT (or target/gpu-check): the logs and summary.txt.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${OUT:-"$ROOT/target/gpu-check"}
CLI=${MEDICO_CLI:-"$ROOT/target/release/medico-cli"}
VENV=${TORCH_VENV:-/opt/torch/.venv}
PY="$VENV/bin/python"
TORCHRUN="$VENV/bin/torchrun"
mkdir -p "$OUT"
summary="$OUT/summary.txt"
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

# libtorch (CUDA included) from the venv's torch; the binary dlopens libtorch_cuda.so from there.
torch_lib=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
nvidia_libs=$("$PY" - <<'PY'
import glob, os, site
paths = []
for base in site.getsitepackages():
    paths += sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib")) + glob.glob(os.path.join(base, "nvidia", "cu*", "lib")))
print(":".join(paths))
PY
)
export LD_LIBRARY_PATH="$torch_lib:$nvidia_libs:${LD_LIBRARY_PATH:-}"
gpus=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
note "GPUs: $gpus ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)); torch $("$PY" -c 'import torch; print(torch.__version__)')"
VOLUMES=$(cd "$ROOT/../shared/data/volumes" && pwd)

write_run() { # NAME MODEL STEPS BATCH ROUNDS
  cat >"$OUT/$1.json" <<JSON
{"model": "$2", "init": "scratch",
 "train": [{"image": "$VOLUMES/mni152_t1.nii.gz", "labels": "$VOLUMES/mni152_tissue_labels.nii.gz",
            "axis": 2, "slice_step": 10, "propagation": true}],
 "objective": "medicosam", "rounds": $5, "steps": $3, "batch_size": $4, "objects_per_image": 2, "lr": 0.00001,
 "seed": 7, "checkpoint_every": 1000, "out": "$1"}
JSON
}

compare() { # FIRST SECOND TOLERANCE
  "$PY" - "$OUT" "$1" "$2" "$3" <<'PY'
import array, json, os, struct, sys
out, first, second, tolerance = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
missing = [run for run in (first, second) if not os.path.exists(f"{out}/{run}/sam.safetensors")]
if missing:
    sys.exit(print(f"{second} vs {first}: no weights from {', '.join(missing)} (its log says why)"))

def tensors(path):  # float32 safetensors, read with the standard library
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        data = f.read()
    header.pop("__metadata__", None)
    return {k: array.array("f", data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}

a, b = tensors(f"{out}/{first}/sam.safetensors"), tensors(f"{out}/{second}/sam.safetensors")
largest = max(max((abs(x - y) for x, y in zip(a[k], b[k])), default=0.0) for k in a)
verdict = "ok" if largest <= tolerance else "DIFFERENT"
print(f"{second} vs {first}: largest weight difference {largest:.2e} (tolerance {tolerance:.0e}): {verdict}")
PY
}

step_seconds() { # RUN: mean seconds per step after the first
  "$PY" -c 'import json, os, sys
if not os.path.exists(sys.argv[1]):
    sys.exit(print("(no log: the run failed)"))
t = [json.loads(l)["seconds"] for l in open(sys.argv[1])]
print(f"{(t[-1] - t[0]) / max(1, len(t) - 1):.3f} s")' "$OUT/$1/log.jsonl"
}

tiny="$ROOT/models/medico-tiny/config.json"
write_run cpu "$tiny" 3 4 3
write_run cuda "$tiny" 3 4 3
"$CLI" train --config "$OUT/cpu.json" --device cpu >"$OUT/cpu.log" 2>&1
"$CLI" train --config "$OUT/cuda.json" --device cuda >"$OUT/cuda.log" 2>&1 || note "CUDA run failed: $(tail -n 3 "$OUT/cuda.log")"
note "$(compare cpu cuda 1e-4)"

if [ "$gpus" -ge 2 ]; then
  write_run cuda-ranks "$tiny" 3 4 3
  "$TORCHRUN" --no-python --standalone --nproc-per-node 2 "$CLI" train --config "$OUT/cuda-ranks.json" --device cuda \
    >"$OUT/cuda-ranks.log" 2>&1 || note "torchrun on CUDA failed: $(tail -n 3 "$OUT/cuda-ranks.log")"
  note "$(compare cuda cuda-ranks 1e-4)"
else
  note "fewer than two GPUs: no 2-GPU run"
fi

# Step time, ViT-B at 1024 px: medico, then PyTorch eager on the same shapes.
write_run vitb vit_b 6 2 8
"$CLI" train --config "$OUT/vitb.json" --device cuda >"$OUT/vitb.log" 2>&1 || note "ViT-B run failed: $(tail -n 3 "$OUT/vitb.log")"
note "medico ViT-B training step (batch 2, 2 objects each, 8 rounds): $(step_seconds vitb)"
"$PY" - >>"$summary" 2>"$OUT/eager.log" <<'PY' || note "PyTorch eager reference failed: $(tail -n 2 "$OUT/eager.log")"
# The same step in PyTorch eager: image encoder on 2 images, 8 decoding rounds of 4 objects with one more
# positive click each round and the previous logits fed back, soft Dice + IoU MSE, backward, AdamW.
import time, torch
from segment_anything import sam_model_registry
sam = sam_model_registry["vit_b"]().cuda().train()
opt = torch.optim.AdamW(sam.parameters(), lr=1e-5)
images = torch.randn(2, 3, 1024, 1024, device="cuda")
target = (torch.rand(4, 1, 256, 256, device="cuda") > 0.5).float()
def step():
    opt.zero_grad()
    emb = sam.image_encoder(images).repeat_interleave(2, 0)
    pts = torch.randint(0, 1024, (4, 1, 2), device="cuda").float()
    lbl = torch.ones(4, 1, device="cuda")
    mask, total = None, 0
    for r in range(8):
        sp, de = sam.prompt_encoder(points=(pts, lbl), boxes=None, masks=mask)
        low, iou = sam.mask_decoder(emb, sam.prompt_encoder.get_dense_pe(), sp, de, multimask_output=(r == 0))
        p = low.sigmoid()
        dice = 1 - 2 * (p * target).sum((2, 3)) / ((p * p).sum((2, 3)) + (target * target).sum((2, 3))).clamp_min(1e-6)
        total = total + dice.min(1).values.mean() + (iou - 0.5).square().mean()
        best = iou.argmax(1)
        mask = low[torch.arange(4), best][:, None].detach()
        pts = torch.cat([pts, torch.randint(0, 1024, (4, 1, 2), device="cuda").float()], 1)
        lbl = torch.cat([lbl, torch.ones(4, 1, device="cuda")], 1)
    (total / 8).backward()
    opt.step()
for _ in range(2):
    step()
torch.cuda.synchronize()
start = time.time()
for _ in range(5):
    step()
torch.cuda.synchronize()
print(f"PyTorch eager ViT-B training step (same shapes): {(time.time() - start) / 5:.3f} s")
PY
cat "$summary"
