"""Lay files out in a Hugging Face cache exactly as huggingface_hub's file_download.py does.

    <cache>/models--ORG--NAME/
        blobs/<etag>                      the bytes; etag = SHA-256 for LFS files, git blob SHA-1 otherwise
        snapshots/<commit>/<file>         relative symlinks to ../../blobs/<etag> (os.path.relpath, as
                                          _create_symlink writes them)
        refs/<branch or tag>              the commit hash, no newline (_cache_commit_hash_for_specific_revision)

LFS files are those the Hub's default .gitattributes routes through LFS (weights, sentencepiece models).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".model", ".msgpack", ".h5", ".onnx")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def etag(name: str, data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() if name.endswith(LFS_SUFFIXES) else git_blob_sha1(data)


def repo_dir(cache: Path, repo_id: str) -> Path:
    return Path(cache) / ("models--" + repo_id.replace("/", "--"))


def put_in_cache(cache: Path, repo_id: str, source: Path | dict[str, bytes], commit: str,
                 refs: tuple[str, ...] = ("main",)) -> Path:
    """Place ``source`` (a directory, or name -> bytes) as snapshot ``commit``; return the snapshot dir."""
    if isinstance(source, (str, Path)):
        root = Path(source)
        source = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    storage = repo_dir(cache, repo_id)
    snapshot = storage / "snapshots" / commit
    for name, data in source.items():
        blob = storage / "blobs" / etag(name, data)
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        pointer = snapshot / name
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    for ref in refs:
        (storage / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    return snapshot


def blob_of(snapshot: Path, name: str) -> Path:
    return Path(os.path.realpath(snapshot / name))
