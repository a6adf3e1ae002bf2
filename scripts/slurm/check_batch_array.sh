#!/usr/bin/env bash
# The job-array recipe of docs/scale.md, run on a real (one-node) Slurm: `sbatch --array=0-3` over a
# manifest of the shared volumes gives the outputs one `batch` process gives, byte for byte; an array
# cancelled half-way and submitted again finishes without redoing a finished item. CI runs it with
# medico-tiny after the tests (scripts/test.sh); by hand, after `bash scripts/setup.sh`:
#   bash scripts/slurm/check_batch_array.sh [WORK_DIR]     # MODEL=NAME|BUNDLE (default: the default model),
#                                                          # MEDICO_CLI=... (default: the release build)
# Starts the local cluster with scripts/slurm/start_local_slurm.sh (root, or sudo).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=${1:-$ROOT/runs/slurm-check}
source "$ROOT/scripts/env.sh"
export MEDICO_CLI=${MEDICO_CLI:-$ROOT/target/release/medico-cli}
model=${MODEL:-}
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
$sudo bash "$ROOT/scripts/slurm/start_local_slurm.sh" >/dev/null
rm -rf "$work" && mkdir -p "$work"
# The manifest: every shared 3D case's prompted slice from its box, and the body CT organs propagated.
python3 - "$ROOT/../shared/data" "$work/manifest.jsonl" <<'PY'
import json, os, sys
data, out = sys.argv[1:3]
lines = []
for cases in (os.path.join(data, "cases.json"), os.path.join(data, "body", "cases_body.json")):
    root = os.path.dirname(cases)
    for case in json.load(open(cases))["cases_3d"]:
        x0, y0, x1, y1 = case["box_xyxy"]
        item = {"scan": os.path.join(root, case["image"]), "axis": case["axis"], "slice": case["central_slice"],
                "box": [x0, y0, x1 + 1, y1 + 1]}
        lines.append(dict(item, output=f"slice/{case['id']}.nii.gz"))
        if case["id"].startswith("s3d_ct_"):
            lines.append(dict(item, output=f"walk/{case['id']}.nii.gz", propagate=True))
open(out, "w").write("".join(json.dumps(l) + "\n" for l in lines))
print(f"{len(lines)} items")
PY
cd "$work"
echo "== one process"
start=$(date +%s)
model_flag=()
[ -n "$model" ] && model_flag=(--model "$model")
"$MEDICO_CLI" batch manifest.jsonl --out single --threads 2 --cache-dir cache "${model_flag[@]}" >single.log 2>&1
echo "   $(( $(date +%s) - start )) s"
checksums() { (cd "$1" && find . -name '*.nii.gz' -print0 | sort -z | xargs -0 sha256sum); }
echo "== sbatch --array=0-3"
start=$(date +%s)
sbatch --wait --array=0-3 "$ROOT/scripts/slurm/segment_array.sbatch" manifest.jsonl array "$model" cache >/dev/null
echo "   $(( $(date +%s) - start )) s"
diff <(checksums single) <(checksums array) && echo "   the array's outputs are the single process's, byte for byte"
echo "== an array cancelled half-way, then submitted again"
job=$(sbatch --parsable --array=0-3 "$ROOT/scripts/slurm/segment_array.sbatch" manifest.jsonl resumed "$model" cache)
for _ in $(seq 1 600); do
  done_lines=$(cat resumed/.medico-batch/*.jsonl 2>/dev/null | grep -c '"error":null' || true)
  [ "$done_lines" -ge 4 ] && break
  sleep 0.1
done
scancel "$job"
while squeue -h -j "$job" 2>/dev/null | grep -q .; do sleep 0.5; done
before=$(cat resumed/.medico-batch/*.jsonl | grep -c '"error":null' || true)
total=$(wc -l < manifest.jsonl)
echo "   cancelled with $before of $total items done"
[ "$before" -gt 0 ] && [ "$before" -lt "$total" ] || { echo "the array was not cancelled half-way" >&2; exit 1; }
sbatch --wait --array=0-3 "$ROOT/scripts/slurm/segment_array.sbatch" manifest.jsonl resumed "$model" cache >/dev/null
finished=$(cat resumed/.medico-batch/*.jsonl | grep -c '"error":null')
skipped=$(cat medico-batch-*.out | grep -c 'done before, skipped' || true)
echo "   resubmitted: $finished items finished in all ($total in the manifest), $skipped skipped as done"
[ "$finished" -eq "$total" ] || { echo "an item was redone or missed" >&2; exit 1; }
diff <(checksums single) <(checksums resumed) && echo "   the resumed array's outputs are the single process's, byte for byte"
