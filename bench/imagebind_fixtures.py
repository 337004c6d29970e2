"""Write tests/fixtures/imagebind/tiny_imagebind.npz: a small ImageBindModel built by ImageBind's own
code, its state dict, inputs of every modality and its embeddings.

tether's ImageBind loader (tether.checkpoints.imagebind) is tested against these
(tests/test_imagebind_checkpoint.py): the released imagebind_huge.pth has the same key names at
other widths. Run once in the peer venv of bench/torchaudio_fixtures.py (same setup, ImageBind
checkout at bench/.venv-torchaudio/src/ImageBind):

    bench/.venv-torchaudio/bin/python bench/imagebind_fixtures.py

The model keeps ImageBind's fixed shapes (224 px images in 2-frame clips, 77-token text over
49,408 ids, 128 x 204 spectrograms, 224 px depth and thermal, 6 x 2000 IMU) at width 32 and two
blocks per trunk. Every parameter and buffer is moved off its initial value (LayerNorms are
ones and zeros at init, which would hide swapped keys); token-embedding rows the inputs never
use are zeroed so the file compresses.
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torchaudio_fixtures import imagebind_modules  # noqa: E402  (the same checkout and shim)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "imagebind" / "tiny_imagebind.npz"
WIDTH, HEADS, BLOCKS, OUT_DIM = 32, 4, 2, 16
QUANT = 64.0  # input = int8 code / QUANT


def huge_layout(imagebind_model) -> None:
    """Key names and shapes of the released imagebind_huge.pth (built on the meta device, nothing
    downloaded), for checking that the ImageBind-H-14 config receives every tensor."""
    linspace = torch.linspace  # ImageBind reads its drop-path schedule with .item(): keep that one on the CPU
    torch.linspace = lambda *a, **k: linspace(*a, **{**k, "device": "cpu"})
    try:
        with torch.device("meta"):
            model = imagebind_model.imagebind_huge(pretrained=False)
    finally:
        torch.linspace = linspace
    layout = {k: list(v.shape) for k, v in model.state_dict().items()}
    path = OUT.parent / "imagebind_huge_layout.json.gz"
    path.write_bytes(gzip.compress(json.dumps(layout, sort_keys=True).encode(), mtime=0))
    print(f"wrote {path.relative_to(ROOT)}: {len(layout)} keys", file=sys.stderr)


def main() -> None:
    _, imagebind_model = imagebind_modules()
    huge_layout(imagebind_model)
    torch.manual_seed(0)
    model = imagebind_model.ImageBindModel(
        out_embed_dim=OUT_DIM,
        vision_embed_dim=WIDTH, vision_num_blocks=BLOCKS, vision_num_heads=HEADS,
        text_embed_dim=WIDTH, text_num_blocks=BLOCKS, text_num_heads=HEADS,
        audio_embed_dim=WIDTH, audio_num_blocks=BLOCKS, audio_num_heads=HEADS, audio_drop_path=0.1,
        depth_embed_dim=WIDTH, depth_num_blocks=BLOCKS, depth_num_heads=HEADS,
        thermal_embed_dim=WIDTH, thermal_num_blocks=BLOCKS, thermal_num_heads=HEADS,
        imu_embed_dim=WIDTH, imu_num_blocks=BLOCKS, imu_num_heads=HEADS, imu_drop_path=0.7).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.zeros(3, 77, dtype=torch.long)
    for row, length in enumerate((5, 9, 77)):  # EOS (the highest id) at different places, one at the very end
        ids[row, :length - 1] = torch.randint(1, 400, (length - 1,), generator=g)
        ids[row, length - 1] = 49407
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not name.endswith("text.mask"):
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=g))
        emb = model.modality_preprocessors.text.token_embedding.weight
        used = torch.zeros(emb.shape[0], dtype=torch.bool)
        used[ids.unique()] = True
        emb[~used] = 0
    shapes = {"vision": (2, 3, 224, 224), "audio": (2, 3, 1, 128, 204),  # audio: 2 recordings x 3 clips
              "depth": (2, 1, 224, 224), "thermal": (2, 1, 224, 224), "imu": (2, 6, 2000)}
    # inputs on a grid of 1/QUANT (stored as int8: a quarter of the size, exactly the values used)
    codes = {k: torch.randint(-128, 128, shape, generator=g, dtype=torch.int8) for k, shape in shapes.items()}
    inputs = {k: c.float() / QUANT for k, c in codes.items()}
    inputs["text"] = ids
    with torch.no_grad():
        outputs = model(inputs)
    arrays = {f"state/{k}": v.numpy() for k, v in model.state_dict().items()}
    arrays.update({f"input/{k}": c.numpy() for k, c in codes.items()})
    arrays["input/text"] = ids.numpy()
    arrays.update({f"output/{k}": v.numpy() for k, v in outputs.items()})
    meta = {"torch": torch.__version__, "input_scale": QUANT, "width": WIDTH, "heads": HEADS, "blocks": BLOCKS, "out_embed_dim": OUT_DIM,
            "imagebind_commit": "53680b0"}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT.relative_to(ROOT)}: {len(arrays) - 1} arrays, {OUT.stat().st_size / 1e3:.0f} kB",
          file=sys.stderr)


if __name__ == "__main__":
    main()
