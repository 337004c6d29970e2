"""Prompt templates for zero-shot classification.

A template is a string with one ``{}`` where the class name goes (``"a photo of a {}."``).
CLIP_benchmark's files write the slot as ``{c}``; that spelling is accepted and turned into
``{}`` when loading.  The sets below were written for tether:

========== ============================================================================
``general``   18 photo templates for everyday objects (the default)
``clothing``  garments and shoes photographed as small grey catalogue images (Fashion-MNIST)
``digits``    handwritten or printed digits (MNIST, sklearn digits, SVHN-like)
``clipart``   clip-art, cartoons and drawings of single objects (Tux Paint stamps)
``photo``     the single template ``"a photo of a {}."``
``name``      the class name alone, ``"{}"``
========== ============================================================================

Your own set: a text file with one template per line (blank lines and lines starting with
``#`` are skipped) or a JSON file holding a list of templates, ``{"templates": [...]}``, or
CLIP_benchmark's ``{dataset_name: [...]}`` layout (pick one with ``key=``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError, UnknownNameError

__all__ = ["TEMPLATE_SETS", "get_templates", "load_templates", "resolve_templates", "fill_template", "check_templates",
           "list_template_sets"]

SLOT = "{}"

GENERAL = [
    "a photo of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a cropped photo of a {}.",
    "a bright photo of a {}.",
    "a dark photo of a {}.",
    "a blurry photo of a {}.",
    "a low-resolution photo of a {}.",
    "a sharp, high-resolution photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "a snapshot of a {}.",
    "a picture showing a {}.",
    "an image that contains a {}.",
    "a {} seen from up close.",
    "a {} in the middle of the frame.",
    "a photo where you can see a {}.",
    "a {}, photographed.",
]

CLOTHING = [
    "a photo of a {}, an item of clothing.",
    "a product photo of a {}.",
    "a catalogue image of a {}.",
    "a grayscale photo of a {}.",
    "a small black and white picture of a {}.",
    "a low-resolution image of a {}.",
    "a {} on a plain dark background.",
    "a {}, a fashion item.",
    "a picture of a {} that someone can wear.",
]

DIGITS = [
    "a photo of the digit {}.",
    "an image of the number {}.",
    "the digit {} written by hand.",
    "a handwritten {}.",
    "a black and white image of the numeral {}.",
    "a low-resolution picture of the number {}.",
    "a printed digit {}.",
    "the number {}.",
]

CLIPART = [
    "a clip-art picture of a {}.",
    "a drawing of a {}.",
    "a cartoon {}.",
    "a cartoon drawing of a {}.",
    "an illustration of a {}.",
    "a colourful sticker of a {}.",
    "an icon showing a {}.",
    "a cut-out picture of a {} on a white background.",
    "a simple picture of a {} for children.",
    "a photo of a {}.",
]

TEMPLATE_SETS: dict[str, list[str]] = {
    "general": GENERAL,
    "clothing": CLOTHING,
    "digits": DIGITS,
    "clipart": CLIPART,
    "photo": ["a photo of a {}."],
    "name": ["{}"],
}


def list_template_sets() -> list[str]:
    return list(TEMPLATE_SETS)


def get_templates(name: str) -> list[str]:
    """A copy of one of tether's template sets (see the module docstring)."""
    try:
        return list(TEMPLATE_SETS[name])
    except KeyError:
        raise UnknownNameError(f"unknown template set {name!r}; known: {', '.join(TEMPLATE_SETS)}") from None


def _check_template(t: Any, where: str) -> str:
    if not isinstance(t, str):
        raise ConfigError(f"{where}: a template must be a string, got {type(t).__name__}")
    t = t.replace("{c}", SLOT)
    if SLOT not in t:
        raise ConfigError(f"{where}: template {t!r} has no '{{}}' slot for the class name")
    return t


def check_templates(templates: Sequence[str], where: str = "templates") -> list[str]:
    """Validate a list of templates (each needs a ``{}``; ``{c}`` is accepted and rewritten)."""
    if isinstance(templates, str):
        templates = [templates]
    out = [_check_template(t, f"{where}[{i}]") for i, t in enumerate(templates)]
    if not out:
        raise ConfigError(f"{where}: no templates")
    return out


def load_templates(path: str | Path, key: str | None = None) -> list[str]:
    """Read templates from a text file (one per line) or a JSON file.

    JSON may be a list of strings, ``{"templates": [...]}``, or a mapping of names to lists
    (CLIP_benchmark's template files) with ``key`` choosing one.  Every template must contain
    ``{}`` (or ``{c}``); the error names the file and line/entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"template file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        if isinstance(data, dict):
            if key is not None:
                if key not in data:
                    raise ConfigError(f"{path}: no key {key!r}; keys: {', '.join(map(str, data))}")
                data = data[key]
            elif "templates" in data:
                data = data["templates"]
            else:
                raise ConfigError(f"{path}: a JSON object needs a 'templates' list or key=... "
                                  f"choosing one of: {', '.join(map(str, data))}")
        if not isinstance(data, list):
            raise ConfigError(f"{path}: expected a list of template strings")
        out = [_check_template(t, f"{path} entry {i}") for i, t in enumerate(data)]
    else:
        out = []
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            out.append(_check_template(line, f"{path} line {lineno}"))
    if not out:
        raise ConfigError(f"{path}: no templates found")
    return out


def resolve_templates(templates: Any) -> list[str] | dict[str, list[str]]:
    """Turn what a user passed into templates.

    * a set name (``"general"``) -> that set;
    * a string with ``{}`` -> that single template;
    * a path to a .txt/.json file -> :func:`load_templates`;
    * a list of templates -> checked copy;
    * a mapping ``class name -> list of full prompts`` (class-specific prompts, e.g. CuPL) ->
      returned as is (prompts are used verbatim, no slot needed).
    """
    if templates is None:
        return get_templates("general")
    if isinstance(templates, Path):
        return load_templates(templates)
    if isinstance(templates, str):
        if templates in TEMPLATE_SETS:
            return get_templates(templates)
        if SLOT in templates or "{c}" in templates:
            return check_templates([templates])
        if Path(templates).is_file():
            return load_templates(templates)
        raise ConfigError(f"templates={templates!r} is not a template set ({', '.join(TEMPLATE_SETS)}), "
                          "a template with '{}', or an existing file")
    if isinstance(templates, Mapping):
        out: dict[str, list[str]] = {}
        for name, prompts in templates.items():
            prompts = [prompts] if isinstance(prompts, str) else list(prompts)
            if not prompts or not all(isinstance(p, str) for p in prompts):
                raise ConfigError(f"class-specific prompts for {name!r} must be a non-empty list of strings")
            out[str(name)] = prompts
        return out
    return check_templates(list(templates))


def fill_template(template: str, class_name: str) -> str:
    """``template`` with every ``{}`` replaced by ``class_name`` (no ``str.format``: other braces stay)."""
    return template.replace(SLOT, class_name)
