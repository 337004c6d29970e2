"""Give a model its input processors: one per tower, built by the tower's modality."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..errors import TetherError
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


def check_processor(model, modality: str, processor, source: Path | str | None = None) -> None:
    """Refuse a processor the model's tower cannot take (a tokenizer with more ids or a longer
    context than the text tower); ``source`` (the model or the processor's files) starts the message.

    Run where the processor is about to be used (the embedding engine, the trainer, ``tether
    embed`` / ``eval``) and when one is attached in Python; not when a checkpoint is loaded, so a
    checkpoint whose tokenizer is larger than its model (test models often are) still loads,
    converts and describes itself."""
    if processor is None or modality not in model.config.towers:
        return
    try:
        get_modality(modality).check_processor(model.config.towers[modality], processor)
    except TetherError as err:
        if source is None:
            raise
        raise type(err)(f"{source}: {err}") from err


def check_processors(model, source: Path | str | None = None) -> None:
    """:func:`check_processor` for every processor the model has (before training or evaluation starts)."""
    for modality, processor in model.processors.items():
        check_processor(model, modality, processor, source)
