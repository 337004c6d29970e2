"""Evaluation metrics of alignment quality, computed as CLIP_benchmark computes them.

* retrieval: image<->text Recall@K, mean/median rank (:mod:`.retrieval`);
* zero-shot classification with prompt ensembles (:mod:`.zeroshot`, templates in :mod:`.templates`);
* linear probe on frozen features (:mod:`.linear_probe`);
* CLIP-score distributions and histograms (:mod:`.scores`);
* captioning: CIDEr-D / CIDEr and caption-by-retrieval (:mod:`.captioning`);
* result files in CLIP_benchmark's JSON layout and a merged CSV (:mod:`.results`).

See docs/metrics.md for the exact definitions.
"""
from .captioning import caption_by_retrieval, cider, cider_d
from .linear_probe import LogisticProbe, linear_probe
from .results import merge_results, read_result, result_record, write_csv, write_result
from .retrieval import retrieval_ranks, retrieval_recall
from .scores import DEFAULT_THRESHOLDS, pair_scores, plot_score_histograms, summarize_by_group, summarize_scores
from .templates import TEMPLATE_SETS, get_templates, load_templates
from .zeroshot import ZeroShotClassifier, classification_metrics, zero_shot_eval

__all__ = [
    "retrieval_recall", "retrieval_ranks",
    "ZeroShotClassifier", "zero_shot_eval", "classification_metrics",
    "TEMPLATE_SETS", "get_templates", "load_templates",
    "linear_probe", "LogisticProbe",
    "pair_scores", "summarize_scores", "summarize_by_group", "plot_score_histograms", "DEFAULT_THRESHOLDS",
    "cider_d", "cider", "caption_by_retrieval",
    "result_record", "write_result", "read_result", "merge_results", "write_csv",
]
