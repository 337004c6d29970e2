"""Files in and out of embedding jobs: finding image files, writing embeddings with their index."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

import torch

from ..checkpoints.common import check_safetensors
from ..data.sample import IMAGE_EXTENSIONS
from ..errors import DataError
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
    engine's callers that write files keep all of them) with its reason. Each file is written
    atomically, and both carry the SHA-256 of the rows (``rows_sha256``): a process killed between
    the two writes leaves a new matrix beside the old index, which :func:`read_embeddings` refuses.
    """
    out_dir = Path(out_dir)
    vectors = result.vectors.contiguous()
    digest = rows_digest(vectors)
    atomic_save_safetensors({"embeddings": vectors}, out_dir / f"{name}.safetensors",
                            metadata={"format": "pt", "rows_sha256": digest})
    failures = [{"item": key, "reason": detail or reason}
                for reason, examples in result.skips.examples.items() for key, detail in examples]
    index = {"count": len(result.ids), "dim": int(vectors.shape[1]) if vectors.ndim == 2 else 0,
             "rows_sha256": digest, "items": result.ids, "failures": failures}
    atomic_write_json(out_dir / f"{name}.json", index, indent=1)
    return out_dir / f"{name}.safetensors"


def rows_digest(vectors: torch.Tensor) -> str:
    """SHA-256 of the float32 rows' bytes: what ties an index to its matrix."""
    return hashlib.sha256(vectors.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def read_embeddings(out_dir: str | Path, name: str) -> tuple[torch.Tensor, list[str]]:
    """What :func:`write_embeddings` wrote: (vectors, the id of each row), checked to belong together."""
    from safetensors import safe_open

    out_dir = Path(out_dir)
    matrix, index_file = out_dir / f"{name}.safetensors", out_dir / f"{name}.json"
    check_safetensors(matrix)
    with safe_open(str(matrix), "pt") as f:
        stored = (f.metadata() or {}).get("rows_sha256")
        vectors = f.get_tensor("embeddings")
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{index_file}: not valid JSON ({err})") from err
    found = (rows_digest(vectors), index.get("rows_sha256"), stored)
    if len(set(found)) != 1 or len(index.get("items", ())) != vectors.shape[0]:
        raise DataError(f"{index_file} does not describe {matrix}: expected the same rows_sha256 in both and in the "
                        f"rows, found {found[1]} (index), {found[2]} (matrix), {found[0]} (rows); an interrupted "
                        "`tether embed`? run it again")
    return vectors, list(index["items"])
