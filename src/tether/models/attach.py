"""Give a model its input processors: one per tower, built by the tower's modality."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..modalities import get_modality


def attach_processors(model, files: Mapping[str, Path | None] | None = None,
                      processors: Mapping[str, object] | None = None) -> None:
    """Build ``model.processors`` from the tower configs.

    ``files``: a directory per modality to read the processor from (a checkpoint's ``tokenizer/``);
    ``processors``: ready objects that win over building (e.g. ``{"text": tokenizer}``).
    A modality whose processor cannot be built offline gets none (tiny models' tokenizers).
    """
    files, given = dict(files or {}), dict(processors or {})
    for name, tower_cfg in model.config.towers.items():
        if name in given:
            processor = given[name]
        else:
            processor = get_modality(name).build_processor(tower_cfg, files.get(name))
        if processor is None:
            model.processors.pop(name, None)
        else:
            model.processors[name] = processor  # loading is lenient: whether it fits is checked before use


