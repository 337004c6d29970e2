"""What an embedding job reads and with what: the source and the model, each with a stable identity.

The identity (a JSON-able value) is what ``OUT/job.json`` records, so a rerun of the same command
resumes and a rerun with another model or dataset is refused: paths are made absolute (a rerun
from another folder is the same job), and a source records its number of inputs (a dataset that
grew or shrank no longer matches its finished parts).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from ..data.sample import Sample
from ..data.sources import ListSource
from ..errors import InputError


#: Sources of the job's own: a plain image folder (``--images``) and a text file (``--texts``).
LOCAL_TYPES = ("images", "texts")


class JobError(InputError):
    """A job that cannot run as asked: the message is one line naming what is wrong."""


def parse_data_spec(text: str) -> dict[str, Any]:
    """``TYPE:PATH`` (``webdataset:shards/``, ``manifest:pairs.parquet``, ``folder:photos/``,
    ``tuxpaint:/usr/share/tuxpaint/stamps``) or a built-in ``TYPE`` alone (``tuxpaint``, ``digits``)."""
    from ..data.spec import SOURCE_TYPES

    kind, _, path = text.partition(":")
    if kind not in SOURCE_TYPES and kind not in LOCAL_TYPES:
        raise JobError(f"--data {text!r}: unknown type {kind!r}; expected TYPE:PATH with TYPE one of "
                       f"{', '.join(sorted([*SOURCE_TYPES, *LOCAL_TYPES]))} (e.g. webdataset:shards/, "
                       "manifest:pairs.csv)")
    spec: dict[str, Any] = {"type": kind}
    if path:
        spec["path"] = os.path.abspath(path)
    return spec


def _local(kind: str, path: Any) -> ListSource:
    if not path:
        raise JobError(f"--data {kind}: needs a path ({kind}:PATH)")
    return image_folder_source(path) if kind == "images" else text_file_source(path)


def image_folder_source(folder: str | Path) -> ListSource:
    """Every image file under ``folder`` (sorted, recursive) as a sample without a caption."""
    from ..embedding.files import find_images

    root = Path(folder)
    if not root.is_dir():
        raise JobError(f"--images {folder}: not a folder")
    paths = find_images([root])
    if not paths:
        raise JobError(f"--images {folder}: no image files found (looked for .jpg, .png, .webp, ... recursively)")
    source = ListSource([Sample(p.relative_to(root).as_posix(), p.resolve(), "") for p in paths],
                        name=f"images:{root.resolve()}")
    source.images_only = True  # type: ignore[attr-defined]
    return source


def text_file_source(path: str | Path) -> ListSource:
    """One sample per line of a UTF-8 text file, keyed ``line<N>`` (1-based); empty lines are skipped later."""
    file = Path(path)
    if not file.is_file():
        raise JobError(f"--texts {path}: no such file")
    lines = file.read_text(encoding="utf-8").splitlines()
    return ListSource([Sample(f"line{i}", None, line) for i, line in enumerate(lines, start=1)],
                      name=f"texts:{file.resolve()}")


def resolve_source(source: Any) -> tuple[Any, Any]:
    """(source object, identity) from a source object, a spec dict or a ``TYPE:PATH`` string."""
    from ..data.spec import build_source

    if isinstance(source, (str, Path)):
        source = parse_data_spec(str(source))
    if isinstance(source, Mapping):
        spec = dict(source)
        if spec.get("path") is not None:
            spec["path"] = os.path.abspath(spec["path"])
        if spec.get("type") == "webdataset":
            spec.setdefault("shuffle", False)
        if spec.get("type") in LOCAL_TYPES:
            return _local(spec["type"], spec.get("path")), spec
        return build_source(spec), spec
    if not hasattr(source, "__len__"):
        raise JobError(f"cannot embed {type(source).__name__}: give a data source, a spec dict or 'TYPE:PATH'")
    return source, {"name": getattr(source, "name", type(source).__name__)}


def resolve_model(model: Any, random_weights: bool = False) -> tuple[Any, Any]:
    """(model, identity) from a loaded model, a checkpoint path or a published name (an architecture
    name only with ``random_weights``, see ``tether.checkpoints.resolve_model``)."""
    from ..checkpoints import resolve_model as load

    if isinstance(model, (str, Path)):
        spec = str(model)
        ident = os.path.abspath(spec) if Path(spec).exists() else spec
        return load(spec, random_weights=random_weights), ident
    config = getattr(model, "config", None)
    name = getattr(config, "name", "") or ""
    return model, f"<{type(model).__name__} {name} embed_dim={getattr(config, 'embed_dim', '?')}>"


__all__ = ["JobError", "image_folder_source", "parse_data_spec", "resolve_model", "resolve_source",
           "text_file_source"]
