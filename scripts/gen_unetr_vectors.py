"""Reference vectors for medico's UNETR decoder, computed by torch-em's own `UNETR` (PyPI `torch-em`).

Writes, for each upsampler variant, `tests/data/unetr/<variant>_decoder.safetensors` (the decoder's state dict
as micro-sam stores a `decoder_state`: every UNETR key but `encoder.*`, no `num_batches_tracked`; random
weights and BatchNorm statistics rounded to float16, stored as float16, so the float32 model below is exactly
the stored one) and `tests/data/unetr/<variant>_io.safetensors` (`embeddings` [1, E, 8, 8] float32 and
`probabilities` [1, classes, 64, 64]: the model's output after its Sigmoid and its post-processing to an
encoder input side of 64).

The encoder is a stand-in returning the embeddings (the decoder only reads the encoder's final output), with
`img_size` 64 so that torch-em's post-processing resizes the 128x128 decoder output down, as it does for
LiteMedSAM's 256 input. Not run in CI: `tests/tests/end_to_end/unetr_parity.rs` reads the committed files.

Usage (a venv with torch 2.11.0 and the torch-em wheel, `pip install --no-deps torch-em==0.10.9`):
    python scripts/gen_unetr_vectors.py tests/data/unetr
"""

import importlib.util
import pathlib
import sys
import types

import torch
from safetensors.torch import save_file

# torch_em/__init__.py imports its data loaders (imageio, scikit-image, ...); the model code needs none of them.
_spec = importlib.util.find_spec("torch_em")
_package = types.ModuleType("torch_em")
_package.__path__ = list(_spec.submodule_search_locations)
sys.modules["torch_em"] = _package
from torch_em.model.unetr import UNETR  # noqa: E402

GRID = 8
IMAGE_SIZE = 64
CLASSES = 3
VARIANTS = {
    # SAM's embedding width with torch-em's default upsampler; a quarter of the default features keeps the
    # committed weights small.
    "bilinear": dict(embed_dim=256, initial_features=16, use_conv_transpose=False),
    "conv_transpose": dict(embed_dim=64, initial_features=8, use_conv_transpose=True),
}


class StandInEncoder(torch.nn.Module):
    """Returns fixed embeddings whatever the image: the decoder sees only the encoder's output."""

    def __init__(self, embeddings):
        super().__init__()
        self.embeddings = embeddings
        self.img_size = IMAGE_SIZE
        self.in_chans = 3

    def forward(self, x):
        return self.embeddings


def as_float16_exact(tensor):
    return tensor.to(torch.float16).to(torch.float32)


def generate(name, embed_dim, initial_features, use_conv_transpose, out_dir, seed):
    torch.manual_seed(seed)
    embeddings = torch.randn(1, embed_dim, GRID, GRID)
    model = UNETR(
        img_size=IMAGE_SIZE,
        encoder=StandInEncoder(embeddings),
        out_channels=CLASSES,
        use_sam_stats=True,
        resize_input=True,
        final_activation="Sigmoid",
        use_skip_connection=False,
        embed_dim=embed_dim,
        use_conv_transpose=use_conv_transpose,
        initial_features=initial_features,
    )
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            # BatchNorm (`deconvN.block.2.*`) away from its identity initialisation, so parity tests it.
            if key.endswith("block.2.running_mean"):
                tensor.copy_(0.1 * torch.randn_like(tensor))
            elif key.endswith("block.2.running_var"):
                tensor.copy_(0.5 + torch.rand_like(tensor))
            elif key.endswith("block.2.weight"):
                tensor.copy_(1.0 + 0.2 * torch.randn_like(tensor))
            elif key.endswith("block.2.bias"):
                tensor.copy_(0.1 * torch.randn_like(tensor))
            if tensor.dtype.is_floating_point:
                tensor.copy_(as_float16_exact(tensor))
    model.eval()
    image = 255.0 * torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        probabilities = model(image)
    assert probabilities.shape == (1, CLASSES, IMAGE_SIZE, IMAGE_SIZE), probabilities.shape
    decoder_state = {
        key: tensor.to(torch.float16).contiguous()
        for key, tensor in model.state_dict().items()
        if not key.startswith("encoder.") and not key.endswith("num_batches_tracked")
    }
    save_file(decoder_state, str(out_dir / f"{name}_decoder.safetensors"))
    save_file(
        {"embeddings": embeddings.contiguous(), "probabilities": probabilities.contiguous()},
        str(out_dir / f"{name}_io.safetensors"),
    )
    params = sum(t.numel() for t in decoder_state.values())
    print(f"{name}: {len(decoder_state)} tensors, {params} values, output range "
          f"{probabilities.min().item():.4f}..{probabilities.max().item():.4f}")


def main():
    out_dir = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/unetr")
    out_dir.mkdir(parents=True, exist_ok=True)
    for seed, (name, variant) in enumerate(VARIANTS.items()):
        generate(name, out_dir=out_dir, seed=seed, **variant)


if __name__ == "__main__":
    main()
