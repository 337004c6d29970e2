"""Data engineering with the shared space: embedding jobs, CLIP-score filtering, deduplication, labels.

Every job reads and writes embedding folders in clip-retrieval's layout (``layout.py``).
"""
from .layout import EmbeddingFolder, LayoutError, open_folder, read_embeddings, read_metadata, write_part

__all__ = ["EmbeddingFolder", "LayoutError", "open_folder", "read_embeddings", "read_metadata", "write_part"]
