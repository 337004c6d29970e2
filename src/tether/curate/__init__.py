"""Data engineering with the shared space: embedding jobs, CLIP-score filtering, deduplication, labels.

Every job reads and writes embedding folders in clip-retrieval's layout (``layout.py``):
``embed_job.py`` (+ ``part.py``, ``job_inputs.py``, ``agreement.py``, ``ray_engine.py``: ``tether embed``), ``score.py`` (CLIP scores beside the metadata), ``filter.py`` + ``rules.py`` (DataComp's score and
basic rules), ``pairs.py`` + ``dedup.py`` (semantic duplicates: exact or SemDeDup's cluster mode),
``dedup_job.py`` (the ``tether dedup`` outputs), ``contact_sheet.py`` (image grids for reports).
Labels (docs/labels.md): ``label_inputs.py`` (checks), ``label_quality.py`` (cleanlab's scores),
``confident_learning.py`` (confident joint, ``find_label_issues``), ``noise_posterior.py`` (the noise-aware
rank), ``audit.py`` / ``label_job.py`` (``tether audit`` / ``tether label``).
"""
from .dedup import DedupResult, deduplicate, find_duplicates
from .confident_learning import find_label_issues
from .embed_job import embed_dataset
from .filter import fraction_threshold
from .job_inputs import JobError
from .label_quality import label_quality_scores
from .noise_posterior import noise_posterior_quality
from .layout import EmbeddingFolder, LayoutError, open_folder, read_embeddings, read_metadata, write_part
from .score import clip_scores, read_scores, write_scores

__all__ = ["DedupResult", "EmbeddingFolder", "JobError", "LayoutError", "clip_scores", "deduplicate",
           "embed_dataset", "find_duplicates", "find_label_issues", "fraction_threshold", "label_quality_scores",
           "noise_posterior_quality", "open_folder", "read_embeddings", "read_metadata", "read_scores", "write_part",
           "write_scores"]
