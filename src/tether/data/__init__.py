"""tether's data layer: image-text pairs from shards, manifests, folders and built-in datasets,
streamed as deterministic, resumable batches to a trainer (see docs/data.md).

* :class:`Sample` - key, image (bytes / path / PIL, decoded lazily in workers), caption, label, extra.
* Sources: :class:`WebDatasetSource` (img2dataset tar shards), :class:`ManifestSource` (CSV/Parquet),
  :class:`FolderSource` (images + .txt sidecars), :class:`ListSource`, :class:`ArraySource`;
  :func:`build_source` builds one from a config dict.
* :func:`write_shards` writes img2dataset-layout shards + ``index.json``.
* :class:`PairDataset` (pipeline.py) / :class:`PairLoader` (loader.py) - batches of pixels + token ids
  with skip accounting (:class:`SkipStats`, skips.py) and exact mid-epoch resume (order arithmetic:
  :func:`epoch_permutation`, order.py).
* Datasets: Fashion-MNIST (:func:`fashion_mnist_arrays`, :func:`fashion_mnist_source`,
  :func:`build_fashion_mnist`, :data:`TRAIN_TEMPLATES` / :data:`HELDOUT_TEMPLATES`), Tux Paint stamps
  (:class:`TuxPaintSource`, :func:`build_tuxpaint`), scikit-learn digits (:func:`digits_arrays`,
  :func:`digits_source`, :func:`build_digits`).
"""

from .digits import DIGIT_CLASSES, DIGIT_TEMPLATES, build_digits, digits_arrays, digits_source
from .fashion_mnist import (
    FASHION_MNIST_CLASSES,
    HELDOUT_TEMPLATES,
    TRAIN_TEMPLATES,
    build_fashion_mnist,
    download_fashion_mnist,
    fashion_mnist_arrays,
    fashion_mnist_captions,
    fashion_mnist_source,
    read_idx,
)
from .loader import PairLoader
from .order import epoch_permutation
from .pipeline import PairDataset
from .sample import SKIP_REASONS, Sample, SkipSample, key_fraction, mix_seed
from .shards import ShardWriteResult, read_index, write_shards
from .skips import SkipStats
from .sources import ArraySource, FolderSource, ListSource, ManifestSource, Source, format_caption
from .spec import build_source
from .tuxpaint import TuxPaintSource, build_tuxpaint, tuxpaint_split
from .webdataset import WebDatasetSource, count_tar_records, expand_urls, iter_tar_records

__all__ = [
    "Sample", "SkipSample", "SKIP_REASONS", "mix_seed", "key_fraction",
    "Source", "ListSource", "ArraySource", "ManifestSource", "FolderSource", "WebDatasetSource", "format_caption",
    "write_shards", "ShardWriteResult", "read_index", "iter_tar_records", "count_tar_records", "expand_urls",
    "PairDataset", "PairLoader", "SkipStats", "epoch_permutation", "build_source",
    "FASHION_MNIST_CLASSES", "TRAIN_TEMPLATES", "HELDOUT_TEMPLATES", "fashion_mnist_arrays", "fashion_mnist_source",
    "fashion_mnist_captions", "build_fashion_mnist", "download_fashion_mnist", "read_idx",
    "TuxPaintSource", "build_tuxpaint", "tuxpaint_split",
    "DIGIT_CLASSES", "DIGIT_TEMPLATES", "digits_arrays", "digits_source", "build_digits",
]
