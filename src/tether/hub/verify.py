"""Checksums of downloaded files, checked before anything reads them.

What a file is checked against, in order:
  * the SHA-256 tether's registry pins for it (pretrained.json ``sha256``), where the publisher gives one;
  * the name of its blob in the Hugging Face cache: huggingface_hub stores each file under its ETag,
    which is the SHA-256 of an LFS file (weights) and the git object id (SHA-1 of ``blob <size>\\0`` +
    bytes) of a regular file (configs, tokenizers). A truncated, corrupted or swapped blob fails.
A file neither names (a cache without symlinks, where files are copied out of ``blobs/``) is
reported unverified, with a warning.

Hashing gigabytes on every load would be slow, so a verified digest is remembered in tether's
cache (``$TETHER_CACHE``, else ``$XDG_CACHE_HOME/tether``, else ``~/.cache/tether``) keyed by the
blob's real path, size and modification time: a changed file is hashed again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path

from ..checkpoints.common import CheckpointError

CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_SHA1 = re.compile(r"[0-9a-f]{40}")


def tether_cache_dir() -> Path:
    """Where tether keeps its own small cache files (verified digests), read from the environment now."""
    if os.environ.get("TETHER_CACHE"):
        return Path(os.path.expanduser(os.environ["TETHER_CACHE"]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tether"


def hash_file(path: Path, algorithm: str) -> str:
    """Stream ``path`` through sha256, or through git's blob SHA-1 ("git-sha1")."""
    if algorithm == "git-sha1":
        digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    else:
        digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def expected_digest(path: Path, pinned: str | None) -> tuple[str, str, str] | None:
    """(algorithm, expected hex digest, where it comes from) for ``path``, or None when nothing names one."""
    if pinned:
        return "sha256", pinned.lower(), "tether's registry (pretrained.json)"
    blob = Path(os.path.realpath(path)).name
    if _SHA256.fullmatch(blob):
        return "sha256", blob, "the Hub's LFS SHA-256 (its blob name in the cache)"
    if _GIT_SHA1.fullmatch(blob):
        return "git-sha1", blob, "the Hub's git object id (its blob name in the cache)"
    return None


def _record_path(real: Path, algorithm: str) -> Path:
    key = hashlib.sha256(f"{real}\0{algorithm}".encode()).hexdigest()[:32]
    return tether_cache_dir() / "verified" / f"{key}.json"


def _cached_digest(real: Path, algorithm: str) -> str:
    """The file's digest: from the record when size and mtime match, else hashed (and recorded)."""
    stat = real.stat()
    stamp = {"path": str(real), "algorithm": algorithm, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    record = _record_path(real, algorithm)
    try:
        saved = json.loads(record.read_text())
        if {k: saved.get(k) for k in stamp} == stamp and isinstance(saved.get("digest"), str):
            return saved["digest"]
    except (OSError, ValueError):
        pass
    digest = hash_file(real, algorithm)
    try:  # best effort: a read-only home must not stop a load
        from ..io import atomic_write_json
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(record, {**stamp, "digest": digest})
    except OSError:
        pass
    return digest


def verify_file(path: Path, pinned: str | None = None, label: str | None = None) -> bool:
    """Raise CheckpointError (one line: file, expected, found) on a mismatch; False when unverifiable."""
    expected = expected_digest(path, pinned)
    name = label or str(path)
    if expected is None:
        warnings.warn(f"{name}: no checksum to verify against (the cache holds a copy, not a blob named by its "
                      "hash, and the registry pins none)", stacklevel=2)
        return False
    algorithm, want, source = expected
    real = Path(os.path.realpath(path))
    found = _cached_digest(real, algorithm)
    if found != want:
        raise CheckpointError(f"{name}: checksum mismatch: expected {algorithm} {want} from {source}, found {found} "
                              f"({real}); the file is corrupt or was replaced: delete it and fetch again")
    return True


__all__ = ["expected_digest", "hash_file", "tether_cache_dir", "verify_file"]
