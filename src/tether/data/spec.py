"""Data sources from plain dicts, so training configs can name their data.

>>> build_source({"type": "manifest", "path": "data/pairs.csv", "caption_column": "text"})
>>> build_source({"type": "webdataset", "path": "shards/fmnist", "split": "train", "shuffle_buffer": 1000})
>>> build_source({"type": "fashion_mnist", "split": "train"})

Keys are checked strictly (a typo is an error, not a silently ignored option), and a source that
turns out empty is an error that says why.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..errors import ConfigError, DataError
from .sources import FolderSource, ManifestSource, Source
from .webdataset import WebDatasetSource

__all__ = ["build_source", "check_source_spec", "SOURCE_TYPES"]


def _webdataset(path: Any, **kw: Any) -> WebDatasetSource:
    return WebDatasetSource(path, **kw)


def _manifest(path: Any, **kw: Any) -> ManifestSource:
    return ManifestSource(path, **kw)


def _folder(path: Any, **kw: Any) -> FolderSource:
    return FolderSource(path, **kw)


def _fashion_mnist(path: Any = None, **kw: Any) -> Source:
    from .fashion_mnist import fashion_mnist_source
    return fashion_mnist_source(kw.pop("split", "train"), root=path, **kw)


def _tuxpaint(path: Any = None, **kw: Any) -> Source:
    from .tuxpaint import TuxPaintSource
    return TuxPaintSource(path, kw.pop("split", "all"), **kw)


def _digits(path: Any = None, **kw: Any) -> Source:
    from .digits import digits_source
    if path is not None:
        raise ConfigError("the digits dataset ships inside scikit-learn; it takes no 'path'")
    return digits_source(kw.pop("split", "all"), **kw)


def _fashion_mnist_points(path: Any = None, **kw: Any) -> Source:
    from .fashion_mnist_points import fashion_mnist_points_source
    return fashion_mnist_points_source(kw.pop("split", "train"), root=path, **kw)


def _basic_motions(path: Any = None, **kw: Any) -> Source:
    from .basic_motions import BasicMotionsSource
    if path is not None:
        raise ConfigError("basic_motions takes no 'path' (set $TETHER_BASIC_MOTIONS to a folder of its .ts files)")
    return BasicMotionsSource(kw.pop("split", "train"), **kw)


def _tuxpaint_digits(path: Any = None, **kw: Any) -> Source:
    from .spoken_digits import spoken_digit_source, tuxpaint_spoken_digits
    templates = kw.pop("templates", None)
    items = tuxpaint_spoken_digits(path, **kw)
    return spoken_digit_source(items, **({"templates": templates} if templates else {}), name="tuxpaint-digits")


def _espeak_digits(path: Any, **kw: Any) -> Source:
    from .spoken_digits import espeak_digits, spoken_digit_source
    templates = kw.pop("templates", None)
    items = espeak_digits(path, **kw)
    return spoken_digit_source(items, **({"templates": templates} if templates else {}), name="espeak-digits")


def _spoken_digit_images(path: Any = None, **kw: Any) -> Source:
    from .spoken_digit_pairs import spoken_digit_image_source
    return spoken_digit_image_source(path, **kw)


def _tuxpaint_speech(path: Any = None, **kw: Any) -> Source:
    from .tuxpaint_speech import TuxPaintSpeechSource
    return TuxPaintSpeechSource(path, kw.pop("split", "all"), **kw)


# type -> (constructor, path required?, allowed option keys)
SOURCE_TYPES: dict[str, tuple[Callable[..., Any], bool, frozenset[str]]] = {
    "webdataset": (_webdataset, True, frozenset({"split", "shuffle", "shuffle_buffer", "seed", "rank", "world_size"})),
    "manifest": (_manifest, True, frozenset({"image_column", "caption_column", "label_column", "key_column", "root",
                                             "class_names", "delimiter", "path_columns"})),
    "folder": (_folder, True, frozenset({"caption", "labels", "class_names", "recursive", "extensions"})),
    "fashion_mnist": (_fashion_mnist, False, frozenset({"split", "templates"})),
    "tuxpaint": (_tuxpaint, False, frozenset({"split", "svg", "validation_fraction", "render_size"})),
    "digits": (_digits, False, frozenset({"split", "templates"})),
    "fashion_mnist_points": (_fashion_mnist_points, False,
                             frozenset({"split", "templates", "num_points", "augment", "limit"})),
    "basic_motions": (_basic_motions, False, frozenset({"split", "templates"})),
    "tuxpaint_digits": (_tuxpaint_digits, False, frozenset({"languages", "templates"})),
    "tuxpaint_speech": (_tuxpaint_speech, False, frozenset({"split", "languages", "exclude_languages", "svg",
                                                            "validation_fraction", "render_size"})),
    "spoken_digit_images": (_spoken_digit_images, False, frozenset({"languages", "exclude_languages", "image_split",
                                                                    "augment", "templates", "sample_rate",
                                                                    "preload"})),
    "espeak_digits": (_espeak_digits, True, frozenset({"languages", "variants", "speeds", "pitches", "templates"})),
}


def check_source_spec(spec: Any) -> tuple[str, Any, dict[str, Any]]:
    """Check a spec's type and keys without opening anything: -> (label for messages, path, options)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"a dataset spec must be a mapping, got {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in SOURCE_TYPES:
        what = "has no 'type'" if kind is None else f"has unknown type {kind!r}"
        raise ConfigError(f"dataset spec {dict(spec)!r} {what}; expected one of {sorted(SOURCE_TYPES)}")
    _, needs_path, allowed = SOURCE_TYPES[kind]
    path = spec.get("path", spec.get("urls"))
    label = spec.get("name") or (f"{kind}:{path}" if path is not None else kind)
    unknown = sorted(set(spec) - allowed - {"type", "path", "name"} - ({"urls"} if kind == "webdataset" else set()))
    if unknown:
        raise ConfigError(f"dataset {label!r}: unknown key(s) {unknown} for type {kind!r}; allowed: "
                          f"{sorted(allowed | {'type', 'path', 'name'})}")
    if needs_path and path in (None, ""):
        raise ConfigError(f"dataset {label!r}: type {kind!r} needs 'path'")
    return label, path, {k: v for k, v in spec.items() if k in allowed}


def build_source(spec: Mapping[str, Any]) -> Source | WebDatasetSource:
    """A source from ``{"type": ..., "path": ..., "name": ..., **options}``.

    Types: ``webdataset`` (``path``: folder / glob / brace pattern / list), ``manifest`` (CSV/TSV
    or Parquet), ``folder`` (images + ``.txt`` sidecars), ``fashion_mnist`` (``split``
    train|test; ``path`` = IDX folder), ``tuxpaint`` (``split`` all|train|validation; ``path`` =
    stamps folder), ``digits`` (``split`` all|train|test).  ``name`` overrides the source's name.
    """
    label, path, options = check_source_spec(spec)
    make = SOURCE_TYPES[spec["type"]][0]
    try:
        source = make(path, **options)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        raise type(exc)(f"dataset {label!r}: {exc}") from exc
    if spec.get("name"):
        source.name = spec["name"]
    if len(source) == 0:
        why = source.describe_empty() if hasattr(source, "describe_empty") else "empty"
        raise DataError(f"source {label!r} yielded 0 samples: {why}")
    return source
