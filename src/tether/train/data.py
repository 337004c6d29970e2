"""What the trainer needs from data: numbered batches of (inputs_a, inputs_b).

``TrainData`` is a small protocol: ``batches_per_epoch()``, ``batches(epoch,
position)`` yielding ``(inputs_a, inputs_b)`` (processed batches of the two
``TrainConfig.modalities``; (pixels, input_ids) by default) from batch ``position`` of ``epoch``
on, and ``skipped()``. ``LoaderTrainData`` implements it over tether.data's
``PairLoader``, whose order is a pure function of (seed, epoch, position): that is
what lets a resumed run see exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

import random
from typing import Any, Iterator, Protocol

import torch

from ..errors import ConfigError, DataError, TokenizerError
from .config import TrainConfig


class TrainData(Protocol):
    def batches_per_epoch(self) -> int: ...

    def batches(self, epoch: int, position: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def skipped(self) -> dict[str, Any]: ...


class LoaderTrainData:
    """A ``PairLoader`` seen as numbered training batches; ``keys``: the batch entries of the pair
    (an image-text ``PairDataset``'s pixels and token ids, a ``ModalityPairDataset``'s modality names)."""

    def __init__(self, loader, keys: tuple[str, str] = ("pixels", "input_ids")) -> None:
        self.loader, self.keys = loader, keys
        dataset = loader.dataset
        self.step_size = dataset.batch_size * dataset.world_size  # positions one step consumes, all ranks
        if len(loader) == 0:
            raise DataError(f"data source {dataset.name!r} gives no full batch of {dataset.batch_size}: "
                            "it is empty or smaller than the batch size")

    def batches_per_epoch(self) -> int:
        return len(self.loader)

    def batches(self, epoch: int, position: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.loader.set_epoch(epoch, start=position * self.step_size)
        for batch in self.loader:
            yield batch[self.keys[0]], batch[self.keys[1]]

    def skipped(self) -> dict[str, Any]:
        return self.loader.stats.to_dict()


def caption_corpus(source, limit: int = 200_000, seed: int = 0) -> list[str]:
    """Captions to train a tokenizer on: every template x class for template sources, else a sample."""
    templates, classes = getattr(source, "templates", None), getattr(source, "class_names", None)
    if templates and classes:
        from ..data import format_caption
        return [format_caption(t, c) for t in templates for c in classes]
    if not hasattr(source, "sample"):  # streams (WebDataset shards): the first `limit` captions
        texts = []
        for sample in source:
            if sample.caption and sample.caption.strip():
                texts.append(sample.caption)
            if len(texts) >= limit:
                break
        return texts
    n = len(source)
    rng = random.Random(seed)
    indices = range(n) if n <= limit else rng.sample(range(n), limit)
    texts = []
    for i in indices:
        try:
            text = source.sample(i).caption
        except Exception:  # unreadable rows are the pipeline's business; the corpus just skips them
            continue
        if text and text.strip():
            texts.append(text)
    return texts


def ensure_tokenizer(model, source, cfg: TrainConfig) -> None:
    """Give the model a tokenizer: ``tokenizer.path`` or ``tokenizer.train_vocab_size`` when set, else the
    model's own (a checkpoint's, or CLIP's BPE for the OpenAI-sized configs), else a BPE trained on the captions."""
    spec = dict(cfg.tokenizer)
    if model.tokenizer is not None and not spec:
        return
    from ..tokenizer import Tokenizer
    text = model.config.tower("text")
    context = text.context_length
    if "path" in spec:
        try:
            model.tokenizer = Tokenizer.load(spec["path"])  # refused if the text tower cannot take it
        except TokenizerError as err:
            raise TokenizerError(f"train.tokenizer.path={spec['path']}: {err}") from err
        return
    vocab = min(int(spec.get("train_vocab_size", 8192)), text.vocab_size)
    corpus = caption_corpus(source, seed=cfg.seed)
    if not corpus:
        raise DataError(f"cannot train a tokenizer: the training source {getattr(source, 'name', source)!r} "
                        "has no captions")
    model.tokenizer = Tokenizer.train_bpe(corpus, vocab_size=vocab, context_length=context, min_frequency=1)


def build_loader(spec: dict[str, Any], model, cfg: TrainConfig, train: bool, batch_size: int | None = None,
                 source=None):
    """A ``PairLoader`` for a data spec (see ``tether.data.build_source``): image-text pairs, or
    any other pair of ``cfg.modalities`` through their processors (``ModalityPairDataset``)."""
    from ..data import PairDataset, PairLoader, build_source
    source = source if source is not None else build_source(spec)
    if list(cfg.modalities) != ["image", "text"]:
        if cfg.augment:
            raise ConfigError(f"train.augment: random crops are for image-text training; the pair "
                              f"{cfg.modalities} is batched by each modality's processor (augment in the source)")
        from ..data.modality_pairs import ModalityPairDataset
        from ..modalities import get_modality
        pairs = ModalityPairDataset(source, model.processors, cfg.modalities,
                                    prepare={m: get_modality(m).prepare for m in cfg.modalities},
                                    batch_size=batch_size or cfg.batch_size, shuffle=train, seed=cfg.seed,
                                    drop_last=train, row_cache_mib=cfg.row_cache_mib if train else 0.0)
        return PairLoader(pairs, num_workers=cfg.workers)
    dataset = PairDataset(source, model.preprocessor, model.tokenizer, batch_size=batch_size or cfg.batch_size,
                          shuffle=train, seed=cfg.seed, drop_last=train, train_transform=train and cfg.augment)
    return PairLoader(dataset, num_workers=cfg.workers)
