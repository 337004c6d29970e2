"""Data engineering with the shared space: embedding jobs, CLIP-score filtering, deduplication, labels.

Every job reads and writes embedding folders in clip-retrieval's layout (``layout.py``).
"""
from .embed_job import embed_dataset
from .job_inputs import JobError
from .layout import EmbeddingFolder, LayoutError, open_folder, read_embeddings, read_metadata, write_part

__all__ = ["EmbeddingFolder", "JobError", "LayoutError", "embed_dataset", "open_folder", "read_embeddings",
           "read_metadata", "write_part"]
