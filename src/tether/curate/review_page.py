"""A static HTML review page: each image with its candidate labels, the items most in need of a person first.

One self-contained file beside an ``images/`` folder of thumbnails (relative links), so it opens
from disk in any browser: no server, no scripts, no network. ``tether label`` lists weak-label
candidates with their probabilities and the decision; ``tether audit`` lists suspected label errors
with the given label and the candidates. Every text is HTML-escaped.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..io import atomic_write_text

__all__ = ["ReviewItem", "write_review_page"]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } .summary { color: #555; margin-bottom: 1em; white-space: pre-line; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
.card { width: 200px; border: 1px solid #ccc; border-radius: 6px; padding: 8px; }
.card.review, .card.flagged { border: 3px solid #cf222e; } .card.accept { border: 3px solid #2ea043; }
.card.unflagged { border: 3px solid #d4a72c; }
.card img, .card .noimage { width: 180px; height: 180px; object-fit: contain; background: #f4f4f4; display: block; }
.card .noimage { line-height: 180px; text-align: center; color: #888; }
.key { font-size: 0.8em; color: #555; word-break: break-all; } .given { font-weight: bold; }
.badge { display: inline-block; font-size: 0.75em; padding: 1px 6px; border-radius: 8px; color: #fff; }
.badge.review, .badge.flagged { background: #cf222e; } .badge.accept { background: #2ea043; }
.badge.unflagged { background: #9a6700; }
ol.candidates { padding-left: 1.3em; margin: 4px 0; font-size: 0.9em; }
.bar { display: inline-block; height: 6px; background: #0969da; vertical-align: middle; margin-left: 4px; }
"""


@dataclass
class ReviewItem:
    """One card: a thumbnail (relative path or None), a key, candidates (name, probability), a decision
    (``accept`` / ``review`` for weak labels; ``flagged`` / ``unflagged`` by ``find_label_issues`` in an audit)."""

    key: str
    image: str | None
    candidates: Sequence[tuple[str, float]]
    decision: str
    given: str | None = None
    notes: list[str] = field(default_factory=list)


def _card(item: ReviewItem) -> str:
    e = html.escape
    picture = (f'<img src="{e(item.image)}" alt="{e(item.key)}" loading="lazy">' if item.image
               else '<div class="noimage">no image</div>')
    given = f'<div class="given">given: {e(item.given)}</div>' if item.given is not None else ""
    rows = "".join(f'<li class="candidate"><span class="name">{e(name)}</span> <span class="prob">{p:.3f}</span>'
                   f'<span class="bar" style="width:{max(1, round(60 * p))}px"></span></li>'
                   for name, p in item.candidates)
    notes = "".join(f'<div class="note">{e(n)}</div>' for n in item.notes)
    return (f'<div class="card {e(item.decision)}" data-key="{e(item.key)}">{picture}'
            f'<div class="key">{e(item.key)}</div> <span class="badge {e(item.decision)}">{e(item.decision)}</span>'
            f'{given}<ol class="candidates">{rows}</ol>{notes}</div>')


def write_review_page(path: str | Path, title: str, summary: str, items: Sequence[ReviewItem]) -> Path:
    """Write the page; ``items`` are shown in the order given (most in need of review first)."""
    e = html.escape
    body = "\n".join(_card(i) for i in items)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
            f'<style>{STYLE}</style></head><body><h1>{e(title)}</h1><div class="summary">{e(summary)}</div>'
            f'<div class="grid">\n{body}\n</div></body></html>\n')
    return atomic_write_text(path, page)
