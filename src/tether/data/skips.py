"""Skip accounting in the main process: :class:`SkipStats` adds up the ``skipped`` records
and sizes of the batches a :class:`~tether.data.PairDataset` yields (any number of workers)."""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["SkipStats", "skip_reason"]

_NOT_FOUND = ("file not found", "path is a directory")


def skip_reason(exc: BaseException) -> str:
    """The counted reason for an input that could not be turned into a row (see ``SKIP_REASONS``)."""
    from ..preprocess import ImageDecodeError
    from .sample import SkipSample

    if isinstance(exc, SkipSample):
        return exc.reason
    own = getattr(exc, "skip_reason", None)  # errors that know how jobs count them (AudioDecodeError ...)
    if isinstance(own, str):
        return own
    if isinstance(exc, ImageDecodeError):
        return "missing_image" if exc.reason in _NOT_FOUND else "corrupt_image"
    if isinstance(exc, OSError):
        return "unreadable_input"
    return "invalid_input"


class SkipStats:
    """Skip counts by reason, aggregated from batches in the main process."""

    def __init__(self, max_examples: int = 5) -> None:
        self.max_examples = max_examples
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[tuple[str, str]]] = {}
        self.positions = 0
        self.kept = 0
        self.batches = 0

    def add(self, key: str, reason: str, detail: str = "") -> None:
        self.counts[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < self.max_examples:
            ex.append((key, detail))

    def update(self, batch: dict[str, Any]) -> None:
        """Add one batch's ``skipped`` records and sizes."""
        for rec in batch.get("skipped", ()):
            self.add(rec["key"], rec["reason"], rec.get("detail", ""))
        self.positions += int(batch.get("n_positions", 0))
        self.kept += len(batch.get("keys", ()))
        self.batches += 1

    def merge(self, other: SkipStats) -> None:
        for reason, n in other.counts.items():
            self.counts[reason] += n
            ex = self.examples.setdefault(reason, [])
            ex.extend(other.examples.get(reason, [])[: max(0, self.max_examples - len(ex))])
        self.positions += other.positions
        self.kept += other.kept
        self.batches += other.batches

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"positions": self.positions, "kept": self.kept, "skipped": self.skipped,
                "by_reason": dict(sorted(self.counts.items())),
                "examples": {r: [{"key": k, "detail": d} for k, d in ex] for r, ex in sorted(self.examples.items())}}

    def summary(self, name: str = "data") -> str:
        head = f"{name}: kept {self.kept} of {self.positions} samples"
        if not self.counts:
            return head + ", skipped none"
        parts = []
        for reason, n in sorted(self.counts.items(), key=lambda kv: -kv[1]):
            key, detail = self.examples[reason][0]
            parts.append(f"{reason} {n} (e.g. {key!r}{': ' + detail if detail else ''})")
        return f"{head}, skipped {self.skipped}: " + "; ".join(parts)

    def __repr__(self) -> str:
        return f"SkipStats({self.summary()})"
