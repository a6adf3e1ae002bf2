#!/usr/bin/env bash
# Data-parallel training as users start it: `medico-cli train` twice under torchrun (torch from PyPI, in
# .deps/torchrun-venv from scripts/setup.sh) and as two Slurm tasks (scripts/slurm/train.sbatch on the local
# one-node Slurm of scripts/slurm/start_local_slurm.sh), Gloo on loopback, trains the model one process trains on
# the same global batches (3 steps at the paper's learning rate, medico-tiny's architecture from scratch on MNI152
# slices: weights within 1e-5, losses within 1e-5; the ranks' own weights identical — the run refuses to finish
# otherwise), also when stopped and resumed; then a rank killed mid-run makes the other stop with an error within
# 60 s.
#   bash scripts/distributed/check_torchrun_training.sh [WORK_DIR]
# MEDICO_CLI: a medico-cli built with the torch feature (default target/release/medico-cli).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${1:-"$ROOT/target/torchrun-check"}
CLI=${MEDICO_CLI:-"$ROOT/target/release/medico-cli"}
TORCHRUN=${TORCHRUN:-"$ROOT/.deps/torchrun-venv/bin/torchrun"}
# shellcheck source=../env.sh
source "$ROOT/scripts/env.sh"
VOLUMES=$(cd "$ROOT/../shared/data/volumes" && pwd)
rm -rf "$WORK"
mkdir -p "$WORK"

# A run: STEPS steps of a global batch of 4 MNI152 slices (2 objects each, their propagation boxes too).
write_run() { # NAME STEPS
  cat >"$WORK/$1.json" <<JSON
{"model": "$ROOT/models/medico-tiny/config.json", "init": "scratch",
 "train": [{"image": "$VOLUMES/mni152_t1.nii.gz", "labels": "$VOLUMES/mni152_tissue_labels.nii.gz",
            "axis": 2, "slice_step": 20, "propagation": true}],
 "objective": "medicosam", "rounds": 3, "steps": $2, "batch_size": 4, "objects_per_image": 2, "lr": 0.00001,
 "seed": 7, "checkpoint_every": 1, "out": "$1"}
JSON
}

# Fails unless the runs in WORK/FIRST and WORK/SECOND trained the same weights (within 1e-5) with the same losses.
compare() { # FIRST SECOND
  python3 - "$WORK" "$1" "$2" <<'PY'
import array, json, struct, sys
work, first, second = sys.argv[1:4]

def tensors(path):  # a safetensors file of float32 tensors, read with the standard library
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        data = f.read()
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", (name, info["dtype"])
        start, end = info["data_offsets"]
        out[name] = array.array("f", data[start:end])
    return out

a, b = tensors(f"{work}/{first}/sam.safetensors"), tensors(f"{work}/{second}/sam.safetensors")
assert a.keys() == b.keys()
largest = max(max((abs(x - y) for x, y in zip(a[k], b[k])), default=0.0) for k in a)
losses = [[json.loads(l)["loss"] for l in open(f"{work}/{run}/log.jsonl")] for run in (first, second)]
print(f"{second} vs {first}: largest weight difference {largest:.2e} over {len(a)} tensors; losses {losses[0]} vs {losses[1]}")
assert largest <= 1e-5, f"{second} trained other weights than {first}: {largest}"
assert len(losses[0]) == len(losses[1]) == 3
assert all(abs(x - y) <= 1e-5 * max(1, abs(x)) for x, y in zip(*losses)), losses
PY
}

echo "== one process"
write_run single 3
OMP_NUM_THREADS=1 "$CLI" train --config "$WORK/single.json" --device cpu

echo "== two ranks under torchrun --no-python (Gloo, loopback)"
write_run ranks 3
OMP_NUM_THREADS=1 "$TORCHRUN" --no-python --standalone --nproc-per-node 2 \
  "$CLI" train --config "$WORK/ranks.json" --device cpu --rank-timeout 60
compare single ranks

echo "== two ranks stopped after 2 steps, resumed to 3"
write_run resumed 2
OMP_NUM_THREADS=1 "$TORCHRUN" --no-python --standalone --nproc-per-node 2 \
  "$CLI" train --config "$WORK/resumed.json" --device cpu --rank-timeout 60 >/dev/null
write_run resumed 3
OMP_NUM_THREADS=1 "$TORCHRUN" --no-python --standalone --nproc-per-node 2 \
  "$CLI" train --config "$WORK/resumed.json" --device cpu --rank-timeout 60
compare single resumed

echo "== two ranks as Slurm tasks (sbatch --ntasks=2 scripts/slurm/train.sbatch)"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
$sudo bash "$ROOT/scripts/slurm/start_local_slurm.sh" >/dev/null
write_run slurm 3
(cd "$WORK" && MASTER_ADDR=127.0.0.1 MASTER_PORT=29632 MEDICO_CLI="$CLI" \
  sbatch --wait --ntasks=2 --cpus-per-task=1 "$ROOT/scripts/slurm/train.sbatch" "$WORK/slurm.json" cpu >/dev/null) \
  || { cat "$WORK"/medico-train-*.out; exit 1; }
compare single slurm

echo "== a rank killed mid-run"
write_run killed 400
export MASTER_ADDR=127.0.0.1 MASTER_PORT=29631 WORLD_SIZE=2
RANK=0 LOCAL_RANK=0 OMP_NUM_THREADS=1 "$CLI" train --config "$WORK/killed.json" --device cpu --rank-timeout 60 \
  >"$WORK/rank0.log" 2>&1 &
survivor=$!
RANK=1 LOCAL_RANK=1 OMP_NUM_THREADS=1 "$CLI" train --config "$WORK/killed.json" --device cpu --rank-timeout 60 \
  >"$WORK/rank1.log" 2>&1 &
victim=$!
# Killed once the run is under way (rank 0 has written a checkpoint).
for _ in $(seq 600); do
  [ -f "$WORK/killed/checkpoint.safetensors" ] && break
  sleep 0.2
done
[ -f "$WORK/killed/checkpoint.safetensors" ] || { echo "the run never started"; cat "$WORK"/rank*.log; exit 1; }
kill -9 "$victim"
killed_at=$(date +%s)
status=0
wait "$survivor" || status=$?
waited=$(( $(date +%s) - killed_at ))
echo "rank 0 exited with $status, $waited s after rank 1 was killed: $(tail -n 3 "$WORK/rank0.log" | tr '\n' ' ')"
[ "$status" -ne 0 ] || { echo "rank 0 went on without its peer"; exit 1; }
[ "$waited" -le 60 ] || { echo "rank 0 took $waited s to stop"; exit 1; }
grep -q "rank 0 of 2" "$WORK/rank0.log" || { echo "rank 0's error does not say which rank failed"; exit 1; }
echo "torchrun check: passed"
