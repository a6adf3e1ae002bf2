"""Writes models/medico-lite/train-semantic.json: the semantic head of medico-lite, grey and white matter.

Training: the MNI152 template's tissue labels (1 = grey matter, 2 = white matter), all three axes. Held out:
the INIA19 macaque template (another volume and species), whose NeuroMaps structures are mapped to the two
classes by name: white matter = names with white/fasciculus/tract/capsule/callosum/commissure/lemniscus/
peduncle/radiation/fornix/corona/fiber/fibre/nerve/stria terminalis/optic chiasm/funiculus/brachium/
decussation/ansa/lamina/alveus/fimbria; ventricles, aqueduct, cisterns and canals = background; every other
structure (cortical gyri, deep nuclei) = grey matter. Needs only the label table (no image library).

Usage: python3 scripts/make_semantic_config.py [SHARED_DIR]
"""

import json
import pathlib
import re
import sys

WHITE = re.compile(
    r"white|fasciculus|tract|capsule|callos|commissure|lemnisc|peduncle|radiation|fornix|corona|fiber|fibre|"
    r"nerve|stria_terminalis|optic_chiasm|funiculus|brachium|decussation|ansa|lamina|alveus|fimbria",
    re.I,
)
FLUID = re.compile(r"ventricle|aqueduct|cistern|csf|canal", re.I)
VOLUMES = "../../../shared/data/volumes"


def inia19_classes(table):
    grey, white = [], []
    for line in table.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0].isdigit():
            continue
        value, name = int(parts[0]), parts[1]
        if FLUID.search(name):
            continue
        (white if WHITE.search(name) else grey).append(value)
    return [grey, white]


def main():
    shared = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "../shared")
    inia = inia19_classes(shared / "data/volumes/inia19_neuromaps_labels.txt")
    mni = {"image": f"{VOLUMES}/mni152_t1.nii.gz", "labels": f"{VOLUMES}/mni152_tissue_labels.nii.gz"}
    held_out = {
        "image": f"{VOLUMES}/inia19_t1_brain.nii.gz",
        "labels": f"{VOLUMES}/inia19_neuromaps_labels.nii.gz",
        "classes": inia,
    }
    config = {
        "objective": "semantic",
        "model": "lite_medsam",
        "init": "../../.deps/litemedsam/lite_medsam.pth",
        "classes": ["grey matter", "white matter"],
        "initial_features": 8,
        "freeze_image_encoder": True,
        "embedding_cache": "../../runs/medico-lite-embeddings",
        "train": [dict(mni, axis=axis, slice_step=2) for axis in range(3)],
        "val": [dict(held_out, axis=axis, slice_step=4) for axis in range(3)],
        "steps": 300,
        "batch_size": 2,
        "lr": 1e-3,
        "val_every": 50,
        "seed": 0,
        "out": "../../runs/medico-lite-semantic",
    }
    out = pathlib.Path("models/medico-lite/train-semantic.json")
    text = json.dumps(config, indent=1)
    # One line per list of label values.
    text = re.sub(r"\[\s*([-\d,\s]+?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text)
    out.write_text(text + "\n")
    print(f"wrote {out}: INIA19 grey {len(inia[0])} values, white {len(inia[1])} values")


if __name__ == "__main__":
    main()
