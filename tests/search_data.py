"""Data shared by the search tests: clustered unit vectors in clip-retrieval's layout, and real
Tux Paint stamps embedded by `tether embed` with the tiny checkpoint (a folder source: images with
their captions as .txt sidecars), so metadata holds real image paths."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tether.curate.layout import write_part

DIM = 32
TUX_STAMPS = 48


def clustered(n: int, d: int = DIM, seed: int = 0, clusters: int = 40) -> np.ndarray:
    """Unit vectors around ``clusters`` random centres (the shape real embeddings have)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_clustered(root: Path, rows: list[int], seed: int = 0, first_part: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Parts of ``rows`` image and text vectors each (float16, as `tether embed` stores them)."""
    image, text = clustered(sum(rows), seed=seed), clustered(sum(rows), seed=seed + 100)
    start = 0
    for part, n in enumerate(rows, start=first_part):
        sl = slice(start, start + n)
        keys = [f"p{part}-{i}" for i in range(n)]
        write_part(root, part, {"image": image[sl], "text": text[sl]},
                   {"key": keys, "caption": [f"caption {k}" for k in keys], "label": [i % 3 for i in range(n)]},
                   dtype="float16")
        start += n
    return image, text


def tux_pairs(stamps_dir: Path, out: Path, count: int = TUX_STAMPS) -> Path:
    """``count`` PNG stamps copied with their captions as sidecars (a `folder:` source)."""
    from tether.data import TuxPaintSource

    out.mkdir(parents=True, exist_ok=True)
    stamps = [s for s in TuxPaintSource(stamps_dir).stamps if s.path.suffix == ".png"][:count]
    for i, s in enumerate(stamps):
        shutil.copyfile(s.path, out / f"{i:03d}-{s.path.name}")
        (out / f"{i:03d}-{s.path.stem}.txt").write_text(s.caption + "\n")
    return out


def embed_tux(checkpoint: Path, stamps_dir: Path, root: Path) -> Path:
    """`tether embed` of the copied stamps into ``root / "emb"`` in parts of 16 (real CLI path)."""
    from tether.cli.main import main

    pairs = tux_pairs(stamps_dir, root / "pairs")
    emb = root / "emb"
    assert main(["embed", "--model", str(checkpoint), "--data", f"folder:{pairs}", "--out", str(emb),
                 "--part-size", "16", "--quiet"]) == 0
    return emb
