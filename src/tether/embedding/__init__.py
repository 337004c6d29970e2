"""The embedding engine (:func:`embed`, :class:`Embeddings`) and its file helpers.

See docs/embedding.md.
"""
from .engine import DEFAULT_BATCH_SIZE, Embeddings, embed
from .files import find_images, read_embeddings, write_embeddings
from .precision import PRECISIONS, autocast

__all__ = ["embed", "Embeddings", "DEFAULT_BATCH_SIZE", "PRECISIONS", "autocast", "find_images",
           "read_embeddings", "write_embeddings"]
