"""What a model name means: a path, a registered published model, a Hub repository, or an architecture.

    ./runs/my-model                       a checkpoint path (wins over every other reading)
    ViT-B-32/openai                       the registry (pretrained.json): ARCH/TAG, OpenCLIP's naming
    openai/clip-vit-base-patch32          a Hugging Face Hub repository (layout read from its files)
    hf-hub:laion/CLIP-ViT-B-32-...        a Hub repository in OpenCLIP's layout (open_clip's own prefix)
    NAME@REVISION                         any of the last three at a branch, tag or commit
    ViT-B-32                              an architecture: random weights, only where asked for

Parsing does no I/O besides checking whether a path exists; nothing here downloads.
"""
from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..checkpoints.common import CheckpointError

HF_HUB_PREFIX = "hf-hub:"
CHECKPOINT_FORMATS = ("hf", "open_clip", "tether")
REGISTRY_FORMAT = "tether.pretrained/1"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENTRY_KEYS = {"hub_id", "format", "files", "sha256", "revision", "preprocess", "tokenizer", "load_options",
               "license", "imagenet_zeroshot_top1", "accuracy_source", "publisher"}


@dataclass(frozen=True)
class PretrainedEntry:
    """One registered published model (an entry of pretrained.json)."""

    name: str  # "ViT-B-32/openai"
    hub_id: str
    format: str  # "hf" | "open_clip" | "tether"
    files: tuple[str, ...]  # weights files, preferred first; the first one the repository has is used
    sha256: dict[str, str] = field(default_factory=dict)  # file -> expected digest, where the publisher gives one
    revision: str | None = None
    preprocess: dict[str, Any] = field(default_factory=dict)  # PreprocessConfig keys
    tokenizer: dict[str, Any] = field(default_factory=dict)  # {"kind": "clip" | "siglip", "context_length": N}
    load_options: dict[str, Any] = field(default_factory=dict)  # keywords for the format's reader
    license: str = ""
    imagenet_zeroshot_top1: float | None = None
    accuracy_source: str = ""
    publisher: str = ""

    @property
    def architecture(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def tag(self) -> str:
        return self.name.split("/", 1)[1]

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any], where: str = "pretrained.json") -> PretrainedEntry:
        """Checked: unknown keys, a missing hub id, an unknown format or a bad digest name the entry."""
        unknown = sorted(set(data) - _ENTRY_KEYS)
        if unknown:
            raise CheckpointError(f"{where}: {name}: unknown key(s) {unknown}; expected {sorted(_ENTRY_KEYS)}")
        if name.count("/") != 1 or not all(name.split("/")):
            raise CheckpointError(f"{where}: {name!r}: expected a name ARCH/TAG, e.g. 'ViT-B-32/openai'")
        if not isinstance(data.get("hub_id"), str) or not _REPO_ID.match(data["hub_id"]):
            raise CheckpointError(f"{where}: {name}: hub_id must be a Hub repository id ORG/NAME, "
                                  f"found {data.get('hub_id')!r}")
        if data.get("format") not in CHECKPOINT_FORMATS:
            raise CheckpointError(f"{where}: {name}: format must be one of {CHECKPOINT_FORMATS}, "
                                  f"found {data.get('format')!r}")
        files = data.get("files")
        if not files or not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise CheckpointError(f"{where}: {name}: files must be a non-empty list of file names, found {files!r}")
        sha = {k: v.lower() for k, v in (data.get("sha256") or {}).items() if v is not None}
        for file, digest in sha.items():
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise CheckpointError(f"{where}: {name}: sha256[{file!r}] must be 64 hex digits, found {digest!r}")
        values = {**data, "files": tuple(files), "sha256": sha}
        return cls(name=name, **{k: copy.deepcopy(v) for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "architecture": self.architecture, "tag": self.tag, "hub_id": self.hub_id,
                "format": self.format, "files": list(self.files), "sha256": dict(self.sha256),
                "revision": self.revision, "preprocess": dict(self.preprocess), "tokenizer": dict(self.tokenizer),
                "load_options": dict(self.load_options), "license": self.license,
                "imagenet_zeroshot_top1": self.imagenet_zeroshot_top1, "accuracy_source": self.accuracy_source,
                "publisher": self.publisher}


@lru_cache(maxsize=1)
def _shipped() -> dict[str, PretrainedEntry]:
    text = resources.files("tether").joinpath("hub").joinpath("pretrained.json").read_text()
    data = json.loads(text)
    if data.get("format") != REGISTRY_FORMAT:
        raise CheckpointError(f"pretrained.json: format {data.get('format')!r}, expected {REGISTRY_FORMAT!r}")
    return {name: PretrainedEntry.from_dict(name, entry) for name, entry in data["models"].items()}


_ADDED: dict[str, PretrainedEntry] = {}


def register_pretrained(name: str, entry: dict[str, Any] | PretrainedEntry) -> PretrainedEntry:
    """Add (or replace) a registry entry at run time, e.g. a team's own models on a private Hub."""
    if isinstance(entry, dict):
        entry = PretrainedEntry.from_dict(name, entry, where="register_pretrained")
    _ADDED[name] = entry
    return entry


def pretrained_registry() -> dict[str, PretrainedEntry]:
    """Every registered name -> entry: the shipped pretrained.json plus register_pretrained's."""
    return {**_shipped(), **_ADDED}


def pretrained_tags(architecture: str) -> list[str]:
    """The registered names for one architecture, e.g. ['ViT-B-32/laion2b_s34b_b79k', 'ViT-B-32/openai']."""
    return sorted(n for n, e in pretrained_registry().items() if e.architecture == architecture)


@dataclass(frozen=True)
class ModelName:
    """A parsed model name. ``kind``: "path", "registry", "hub" or "architecture"."""

    text: str
    kind: str
    path: Path | None = None
    repo_id: str | None = None
    revision: str | None = None
    format: str | None = None  # forced format (hf-hub: -> open_clip; a registry entry's); None: read from files
    entry: PretrainedEntry | None = None


def _architectures() -> list[str]:
    from ..models.registry import list_models
    return list_models()


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~", ".\\")) or spec.count("/") > 1 or \
        Path(spec).suffix in (".pt", ".pth", ".bin", ".safetensors", ".json")


def parse_name(spec: str | Path) -> ModelName:
    """Read ``spec`` (see the module docstring); unknown names raise, suggesting close matches."""
    text = str(spec)
    if not text.strip():
        raise CheckpointError("empty model name; give a checkpoint path, a published name such as "
                              "'ViT-B-32/openai' or a Hub repository id")
    path = Path(text).expanduser()
    if path.exists():
        return ModelName(text, "path", path=path)
    base, _, revision = text.partition("@") if "@" in text else (text, "", None)
    if revision is not None and not revision:
        raise CheckpointError(f"{text!r}: empty revision after '@'; expected NAME@BRANCH, NAME@TAG or NAME@COMMIT")
    if base.startswith(HF_HUB_PREFIX):
        repo = base[len(HF_HUB_PREFIX):].strip("/")
        if not _REPO_ID.match(repo):
            raise CheckpointError(f"{text!r}: expected hf-hub:ORG/NAME, "
                                  "e.g. hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
        return ModelName(text, "hub", repo_id=repo, revision=revision, format="open_clip")
    registry = pretrained_registry()
    if base in registry:
        entry = registry[base]
        return ModelName(text, "registry", repo_id=entry.hub_id, revision=revision or entry.revision,
                         format=entry.format, entry=entry)
    architectures = _architectures()
    if base in architectures:
        if revision is not None:
            raise CheckpointError(f"{text!r}: {base} is an architecture (random weights), which has no revisions; "
                                  f"published: {', '.join(pretrained_tags(base)) or 'none registered'}")
        return ModelName(text, "architecture")
    heads = {a.lower(): a for a in architectures + [e.architecture for e in registry.values()]}
    head = heads.get(base.split("/", 1)[0].lower())
    if "/" in base and head is not None:
        tags = pretrained_tags(head)
        raise CheckpointError(f"{base!r}: no published model of that name; for {head} tether knows "
                              f"{', '.join(tags) or 'no pretrained weights'} (tether models --pretrained)")
    if _looks_like_path(base):
        raise FileNotFoundError(f"{text}: no such file or directory")
    if _REPO_ID.match(base):
        return ModelName(text, "hub", repo_id=base, revision=revision)
    raise CheckpointError(f"{text!r}: not a checkpoint path, a published name, a Hub repository id (ORG/NAME) "
                          f"or an architecture{_suggest(base, list(registry) + architectures)}")


def _suggest(word: str, names: list[str]) -> str:
    lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(word.lower(), list(lower), n=4, cutoff=0.6)
    return f"; did you mean {', '.join(lower[c] for c in close)}?" if close else "; see `tether models --pretrained`"


def random_weights_refusal(architecture: str) -> str:
    """The one-line refusal for an architecture name where weights were expected."""
    tags = pretrained_tags(architecture)
    published = f"published weights: {', '.join(tags)}" if tags else "no published weights are registered for it"
    return (f"{architecture!r} is an architecture, not weights: it would embed with random weights; "
            f"{published}; for random weights on purpose pass --random-weights "
            f"(Python: tether.create_model({architecture!r}))")


__all__ = ["HF_HUB_PREFIX", "CHECKPOINT_FORMATS", "ModelName", "PretrainedEntry", "parse_name", "pretrained_registry",
           "pretrained_tags", "random_weights_refusal", "register_pretrained"]
