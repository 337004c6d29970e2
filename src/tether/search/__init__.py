"""Cross-modal search over an embedding folder: a FAISS index chosen for the data, and its server.

``choice.py`` (which index type fits: autofaiss's rule and memory estimates), ``vector_index.py``
(one modality's FAISS index: build, tune to a target recall, search, PQ re-ranking),
``recall.py`` (exact ground truth, recall@10, query time), ``store.py`` (vectors and metadata by
row id through memory maps), ``build.py`` (``tether index``: build, add parts, index_info.json),
``index.py`` (``open_index``: search and look-ups). The HTTP server lives in ``server/``.
"""
from .build import add_parts, build_index, read_info
from .choice import BudgetError, choose, parse_size
from .index import Hits, SearchIndex, open_index

__all__ = ["BudgetError", "Hits", "SearchIndex", "add_parts", "build_index", "choose", "open_index", "parse_size",
           "read_info"]
