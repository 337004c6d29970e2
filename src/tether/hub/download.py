"""Files of a Hub repository into the Hugging Face cache, checked, through huggingface_hub itself.

The cache is huggingface_hub's (``HF_HUB_CACHE``, else ``HF_HOME``/hub, else ~/.cache/huggingface/hub),
so models fetched by transformers or OpenCLIP are reused and vice versa. huggingface_hub reads its
environment once, at import; tether reads ``HF_HUB_CACHE``/``HF_HOME``/``HF_HUB_OFFLINE`` at each
call and passes them explicitly. Tokens come from huggingface_hub's usual places (``HF_TOKEN``,
``huggingface-cli login``); interrupted downloads resume (huggingface_hub keeps ``.incomplete`` blobs).

Only what tether reads is fetched: the config and tokenizer files, and one weights file per format,
safetensors before pickles (a repository with both never costs the second download).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..checkpoints.common import CheckpointError
from .verify import verify_file

METADATA_FILES = ("config.json", "open_clip_config.json", "preprocessor_config.json", "tokenizer.json",
                  "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt", "spiece.model",
                  "added_tokens.json")
METADATA_DIRS = ("tokenizer/",)  # tether's layout keeps its tokenizer in a folder
_COMMIT = re.compile(r"[0-9a-f]{40}")


def weight_candidates(format: str) -> tuple[str, ...]:
    """The weights files each format's reader looks for, in its own order (safetensors first)."""
    if format == "hf":
        from ..checkpoints.hf import WEIGHT_FILES
        return WEIGHT_FILES
    if format == "open_clip":
        from ..checkpoints.open_clip import WEIGHT_NAMES
        return WEIGHT_NAMES[:2]
    return ("model.safetensors",)


def hf_cache_dir() -> Path:
    """huggingface_hub's cache directory as the environment says now (not when it was imported)."""
    env = os.environ
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(os.path.expandvars(os.path.expanduser(env[key])))
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                              "huggingface")
    return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"


def offline_mode() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now; huggingface_hub's import-time value otherwise."""
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(key)
        if value is not None and value.strip():
            return value.strip().upper() in ("1", "ON", "YES", "TRUE")
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE)


def _hub():
    try:
        import huggingface_hub
    except ImportError as err:  # a declared dependency; only a broken install lands here
        raise CheckpointError("loading a model by name needs huggingface_hub: pip install huggingface_hub") from err
    return huggingface_hub


@dataclass(frozen=True)
class Fetched:
    """Where a repository's files landed: its snapshot directory and the (verified) weights in it."""

    repo_id: str
    revision: str
    commit: str
    directory: Path
    format: str
    weights: tuple[Path, ...]
    files: tuple[Path, ...]

    @property
    def target(self) -> Path:
        """What the format's reader is given: the weights file for OpenCLIP, the directory otherwise."""
        return self.weights[0] if self.format == "open_clip" else self.directory


class _Session:
    """One fetch: the repository, the revision, where the cache is and whether the network is used."""

    def __init__(self, repo_id: str, revision: str | None, label: str, name: str) -> None:
        self.hub = _hub()
        self.repo_id, self.revision = repo_id, revision or "main"
        self.label = f"{label} ({repo_id}@{self.revision})" if label != repo_id else f"{repo_id}@{self.revision}"
        self.name = name  # what to tell the user to fetch
        self.cache = hf_cache_dir()
        self.offline = offline_mode()
        self.unreachable: str | None = None  # why the Hub could not be reached, when it could not

    def not_cached(self, what: str) -> CheckpointError:
        why = ("downloads are off (HF_HUB_OFFLINE=1)" if self.offline
               else f"the Hub cannot be reached ({self.unreachable or 'the download failed'})")
        return CheckpointError(f"{self.label}: {what} is not in the Hugging Face cache {self.cache} and {why}; "
                               f"on a connected machine run `tether fetch {self.name}` (or `huggingface-cli download "
                               f"{self.repo_id}`) and copy that cache directory here (HF_HOME or HF_HUB_CACHE)")

    def translate(self, err: Exception, filename: str | None = None) -> CheckpointError:
        from huggingface_hub import utils as E
        if isinstance(err, E.GatedRepoError):
            return CheckpointError(f"{self.label}: gated repository: accept its terms on https://huggingface.co/"
                                   f"{self.repo_id} and log in (huggingface-cli login or HF_TOKEN)")
        if isinstance(err, E.RepositoryNotFoundError):
            return CheckpointError(f"{self.label}: no such repository on the Hugging Face Hub (a private one needs "
                                   "a token: huggingface-cli login or HF_TOKEN)")
        if isinstance(err, E.RevisionNotFoundError):
            return CheckpointError(f"{self.label}: the repository has no revision {self.revision!r}")
        if isinstance(err, E.LocalEntryNotFoundError):
            return self.not_cached(filename or "the repository")
        if isinstance(err, E.EntryNotFoundError):
            return CheckpointError(f"{self.label}: the repository has no file {filename}")
        first = (str(err).strip().splitlines() or [""])[0]
        return CheckpointError(f"{self.label}: download of {filename or 'the file list'} failed: "
                               f"{type(err).__name__}: {first}")

    # ------------------------------------------------------------------ listing
    def listing(self) -> list[str]:
        """The repository's files: from the Hub when online, else from the cached snapshot."""
        if not self.offline:
            from huggingface_hub import utils as E
            try:
                info = self.hub.HfApi().model_info(self.repo_id, revision=self.revision)
                return sorted(s.rfilename for s in (info.siblings or []))
            except (E.RepositoryNotFoundError, E.RevisionNotFoundError) as err:
                raise self.translate(err) from err
            except Exception as err:  # no network, proxy, Hub down: fall back to the cache, as huggingface_hub does
                self.unreachable = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
        cached = self.cached_listing()
        if cached is None:
            raise self.not_cached("the repository")
        return cached

    def cached_listing(self) -> list[str] | None:
        """Files of the cached snapshot the revision points at (refs/<revision> or a commit), else None."""
        from huggingface_hub.file_download import repo_folder_name
        storage = self.cache / repo_folder_name(repo_id=self.repo_id, repo_type="model")
        commit = self.revision
        if not _COMMIT.fullmatch(commit):
            ref = storage / "refs" / self.revision
            if not ref.is_file():
                return None
            commit = ref.read_text().strip()
        snapshot = storage / "snapshots" / commit
        if not snapshot.is_dir():
            return None
        return sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())

    # ------------------------------------------------------------------ download
    def download(self, filename: str) -> Path:
        try:
            path = self.hub.hf_hub_download(self.repo_id, filename, revision=self.revision, cache_dir=str(self.cache),
                                            local_files_only=self.offline or self.unreachable is not None,
                                            library_name="tether")
        except Exception as err:
            raise self.translate(err, filename) from err
        return Path(path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not readable JSON ({err})") from err
    return data if isinstance(data, dict) else {}


def _detect_format(files: list[str], config: Path | None, label: str) -> str:
    if config is not None:
        cfg = _read_json(config)
        if cfg.get("model_type") in ("clip", "siglip"):
            return "hf"
        if "embed_dim" in cfg and "towers" in cfg:
            return "tether"
    if "open_clip_config.json" in files or any(f in files for f in weight_candidates("open_clip")):
        return "open_clip"
    raise CheckpointError(f"{label}: not a model format tether reads: expected config.json with model_type 'clip' "
                          "or 'siglip' (transformers), open_clip_config.json + open_clip_model.safetensors (OpenCLIP) "
                          f"or a tether config.json; the repository has {', '.join(files[:12]) or 'no files'}")


def _weights(session: _Session, files: list[str], candidates: Sequence[str]) -> list[str]:
    """The first candidate the repository has; a shard index expands to its shards."""
    chosen = next((c for c in candidates if c in files), None)
    if chosen is None:
        where = "the cached snapshot" if session.offline or session.unreachable else "the repository"
        raise CheckpointError(f"{session.label}: missing weights: none of {', '.join(candidates)} is in {where} "
                              f"(it has {', '.join(files[:12]) or 'no files'})")
    if not chosen.endswith(".index.json"):
        return [chosen]
    index = _read_json(session.download(chosen))
    shards = sorted(set((index.get("weight_map") or {}).values()))
    if not shards:
        raise CheckpointError(f"{session.label}: {chosen} has no 'weight_map'")
    return [chosen, *shards]


def fetch(repo_id: str, revision: str | None = None, format: str | None = None,
          weights: Sequence[str] | None = None, sha256: dict[str, str] | None = None,
          name: str | None = None) -> Fetched:
    """Download (or find in the cache) what tether needs of ``repo_id`` and verify every file.

    format: force "hf", "open_clip" or "tether" (default: read from the repository's files).
    weights: weights file names, preferred first (default: the format reader's own order).
    sha256: file -> expected SHA-256 (a registry entry's); other files are checked against the Hub's ids.
    name: the name the user gave, for messages.
    """
    session = _Session(repo_id, revision, name or repo_id, name or repo_id)
    files = session.listing()
    wanted = [f for f in files if f in METADATA_FILES or f.startswith(METADATA_DIRS)]
    paths = {f: session.download(f) for f in wanted}
    format = format or _detect_format(files, paths.get("config.json"), session.label)
    chosen = _weights(session, files, tuple(weights or weight_candidates(format)))
    paths.update({f: session.download(f) for f in chosen if f not in paths})
    directory = _snapshot_dir(paths, session)
    for filename, path in paths.items():
        verify_file(path, (sha256 or {}).get(filename), label=f"{session.label}: {filename}")
    weight_paths = tuple(paths[f] for f in chosen if not f.endswith(".index.json")) or (paths[chosen[0]],)
    return Fetched(repo_id, session.revision, directory.name, directory, format, weight_paths,
                   tuple(paths.values()))


def _snapshot_dir(paths: dict[str, Path], session: _Session) -> Path:
    """The one snapshot directory every file is in (the revision moving mid-download would split them)."""
    dirs = {Path(str(p)[: -len(f) - 1]) for f, p in paths.items()}
    if len(dirs) > 1:
        raise CheckpointError(f"{session.label}: the revision moved while downloading (files landed in "
                              f"{', '.join(sorted(d.name for d in dirs))}); run again, or pin a commit: "
                              "NAME@COMMIT")
    return dirs.pop()


__all__ = ["Fetched", "METADATA_FILES", "fetch", "hf_cache_dir", "offline_mode", "weight_candidates"]
