"""Files in and out of embedding jobs: finding image files, writing embeddings with their index."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..data.sample import IMAGE_EXTENSIONS
from ..io import atomic_save_safetensors, atomic_write_json
from .engine import Embeddings


def find_images(sources: Iterable[str | Path]) -> list[Path]:
    """Files given directly plus image files found recursively in folders, sorted."""
    found: list[Path] = []
    for src in map(Path, sources):
        if src.is_dir():
            found += sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        elif src.exists():
            found.append(src)
        else:
            raise FileNotFoundError(f"{src}: no such file or directory")
    return found


def write_embeddings(result: Embeddings, out_dir: str | Path, name: str) -> Path:
    """``<name>.safetensors`` (key 'embeddings') + ``<name>.json`` (the id of each row, skipped inputs).

    The JSON lists every skipped input the result's :class:`SkipStats` kept an example of (the
    engine's callers that write files keep all of them) with its reason.
    """
    out_dir = Path(out_dir)
    atomic_save_safetensors({"embeddings": result.vectors.contiguous()}, out_dir / f"{name}.safetensors")
    failures = [{"item": key, "reason": detail or reason}
                for reason, examples in result.skips.examples.items() for key, detail in examples]
    index = {"count": len(result.ids), "dim": int(result.vectors.shape[1]) if result.vectors.ndim == 2 else 0,
             "items": result.ids, "failures": failures}
    atomic_write_json(out_dir / f"{name}.json", index, indent=1)
    return out_dir / f"{name}.safetensors"
