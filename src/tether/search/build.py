"""``tether index``: an embedding folder to an index folder, and new parts added to one.

An index folder::

    INDEX/image.index, INDEX/text.index       FAISS, one per modality (the type chosen per modality)
    INDEX/img_emb/, INDEX/text_emb/           the vectors, part files linked from the embedding folder
    INDEX/metadata/metadata_0000.arrow        the metadata, Arrow IPC, memory-mapped by row number
    INDEX/index_info.json                     type, parameters, memory, measured recall@10, query time

A first build writes the folder whole (``tether.io.atomic_directory``). Rerunning on the same
embedding folder adds its new parts to the existing indexes (every type here takes additions;
IVF's trained lists and PQ's codebooks are kept), validates recall again, and writes
``index_info.json`` last, so a reader sees the old or the new index, never half of one.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..curate import layout
from ..errors import InputError
from ..io import atomic_directory, atomic_write_json
from .choice import BudgetError, Choice, fitting, format_size, memory_of, parse_size
from .recall import K, drop_rows, exact_topk, query_time
from .store import VectorStore, copy_part
from .vector_index import VectorIndex, read_faiss

INFO_FILE = "index_info.json"
FORMAT = "tether-index"
VERSION = 1
DEFAULT_BUDGET = "4GB"
DEFAULT_TARGET_RECALL = 0.99
#: After the target, the search parameter keeps rising while recall does and a query takes at most this.
DEFAULT_MAX_QUERY_MS = 1.0
QUERIES = 1000
#: Types holding the exact vectors: when one meets the target, the next of them that fits is built and
#: validated too, and the more accurate (then the faster) kept. HNSW's graph search and IVF's lists
#: fail on different data (queries far from the rows, as text queries of an image index are).
EXACT_VECTOR_TYPES = ("hnsw", "ivf-flat")


def index_file(root: str | Path, modality: str, generation: int = 0) -> Path:
    """``image.index`` from a build; ``image.g<N>.index`` after the N-th addition, so a reader holding
    the previous info never opens an index with rows its metadata lacks."""
    return Path(root) / (f"{modality}.index" if generation == 0 else f"{modality}.g{generation}.index")


def read_info(root: str | Path) -> dict[str, Any]:
    path = Path(root) / INFO_FILE
    if not path.is_file():
        raise InputError(f"{root}: not an index folder (no {INFO_FILE}; make one with "
                         "`tether index EMB_DIR --out DIR`)")
    info = json.loads(path.read_text(encoding="utf-8"))
    if info.get("format") != FORMAT:
        raise InputError(f"{path}: format {info.get('format')!r}, expected {FORMAT!r}")
    return info


def build_index(emb_dir: str | Path, out_dir: str | Path, *, memory_budget: str | int = DEFAULT_BUDGET,
                index_type: str | None = None, target_recall: float = DEFAULT_TARGET_RECALL,
                max_query_ms: float = DEFAULT_MAX_QUERY_MS, queries: int = QUERIES, seed: int = 0,
                rebuild: bool = False, parts: Sequence[int] | None = None,
                modalities: Sequence[str] | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Index every modality of ``emb_dir`` into ``out_dir``; returns the index info.

    ``memory_budget`` (bytes or ``"4GB"``) is shared equally by the modalities' indexes;
    ``index_type`` (flat, hnsw, ivf-flat, ivf-pq) forces the type. The search parameter is the
    cheapest reaching ``target_recall`` (recall@10 on held-out queries), then raised while recall
    rises and a query takes at most ``max_query_ms`` (0: exactly the cheapest). An existing index of the same
    embedding folder gets the folder's new parts added instead (``rebuild=True`` starts over).
    ``parts``: index only these part numbers (one shard of a collection served by several servers).
    ``modalities``: index only these (default all); the others still serve as validation queries."""
    log = log or (lambda _msg: None)
    folder = select_parts(layout.open_folder(emb_dir), parts)
    out = Path(out_dir)
    if (out / INFO_FILE).is_file() and not rebuild:
        return add_parts(out, emb_dir, log=log)
    if not 0 < target_recall <= 1:
        raise InputError(f"target recall must be in (0, 1], got {target_recall}")
    if not max_query_ms >= 0:
        raise InputError(f"max query time must be >= 0 ms, got {max_query_ms}")
    budget = parse_size(memory_budget)
    indexed = _indexed(folder, modalities)
    share = budget // len(indexed)
    choices = {m: _fitting(len(folder), folder.dim, share, budget, index_type, m, indexed) for m in indexed}
    with atomic_directory(out) as tmp:
        for part in folder.parts:
            copy_part(folder.root, tmp, part, folder.modalities)
        tuning = Tuning(target_recall, max_query_ms, queries, seed)
        entries = {m: _build_one(tmp, folder, m, choices[m], tuning, log) for m in indexed}
        info = {"format": FORMAT, "version": VERSION, "source": str(folder.root.resolve()),
                "model": _model(folder.root), "parts": folder.parts, "rows": folder.rows, "dim": folder.dim,
                "memory_budget": budget, "target_recall": target_recall, "max_query_ms": max_query_ms, "seed": seed,
                "selected_parts": None if parts is None else sorted(parts), "indexes": entries}
        atomic_write_json(tmp / INFO_FILE, info)
    return info


def _indexed(folder: layout.EmbeddingFolder, modalities: Sequence[str] | None) -> list[str]:
    if modalities is None:
        return list(folder.modalities)
    unknown = sorted(set(modalities) - set(folder.modalities))
    if unknown or not modalities:
        raise InputError(f"{folder.root}: no {unknown or 'modality'} embeddings to index (it has "
                         f"{', '.join(folder.modalities)})")
    return [m for m in folder.modalities if m in modalities]


def select_parts(folder: layout.EmbeddingFolder, parts: Sequence[int] | None) -> layout.EmbeddingFolder:
    """The folder restricted to ``parts`` (all of them when None); a part it lacks is an error."""
    if parts is None:
        return folder
    missing = sorted(set(parts) - set(folder.parts))
    if missing or not parts:
        raise InputError(f"{folder.root}: no finished part(s) {missing or parts} (it has parts {folder.parts})")
    keep = [i for i, p in enumerate(folder.parts) if p in set(parts)]
    return layout.EmbeddingFolder(folder.root, [folder.parts[i] for i in keep], [folder.rows[i] for i in keep],
                                  folder.modalities, folder.dim)


def parse_parts(text: str) -> list[int]:
    """``0-3,7`` -> [0, 1, 2, 3, 7]."""
    out: list[int] = []
    try:
        for item in text.split(","):
            a, _, b = item.strip().partition("-")
            out += list(range(int(a), int(b or a) + 1))
    except ValueError:
        raise InputError(f"--parts {text!r}: expected part numbers like 0-3,7") from None
    return sorted(set(out))


def _fitting(n: int, d: int, share: int, budget: int, kind: str | None, modality: str,
             modalities: Sequence[str]) -> list[Choice]:
    try:
        return fitting(n, d, share, kind)
    except BudgetError as err:
        if len(modalities) == 1:
            raise
        total = err.need * len(modalities)
        raise BudgetError(f"memory budget {format_size(budget)} is too small for {' and '.join(modalities)} "
                          f"indexes of {n} x {d} vectors (the budget is shared by them, {format_size(share)} each): "
                          f"the smallest ({err.key}) needs {format_size(err.need)} each; raise --memory-budget to at "
                          f"least {format_size(total)}", total, err.key) from None


def _model(root: Path) -> Any:
    path = root / "summary.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8")).get("model")
    return None


@dataclass(frozen=True)
class Tuning:
    """How every index is validated: target recall@10, query-time budget, held-out queries, seed."""

    target: float
    max_query_ms: float
    queries: int
    seed: int


def _better(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether validated entry ``a`` beats ``b``: meeting the target, then recall, then query time."""
    return ((a["target_met"], a["recall_at_10"], -a["query_time"]["single_ms"])
            > (b["target_met"], b["recall_at_10"], -b["query_time"]["single_ms"]))


def _build_one(root: Path, folder: layout.EmbeddingFolder, modality: str, options: Sequence[Choice],
               tuning: Tuning, log: Callable[[str], None]) -> dict[str, Any]:
    """Build and validate the first option; one that misses the target recall gives way to the next
    (the best-scoring one is kept if none reaches it), and one of :data:`EXACT_VECTOR_TYPES` that
    meets it is compared with the next such type that fits. Every try is recorded."""
    store = VectorStore(root, modality, folder.parts, folder.rows)
    best, tried = None, []
    for i, choice in enumerate(options):
        log(f"{modality}: {len(store)} x {folder.dim} vectors -> {choice.key} ({format_size(choice.memory)})")
        t0 = time.perf_counter()
        index = VectorIndex.build(choice, store, seed=tuning.seed)
        entry = {"type": choice.kind, "key": choice.key, "params": choice.params, "vectors": len(store),
                 "file": index_file(root, modality).name, "memory_bytes": choice.memory,
                 "build_seconds": round(time.perf_counter() - t0, 3)}
        entry.update(_validate(root, folder, modality, index, store, tuning))
        log(f"{modality}: recall@{K} {entry['recall_at_10']:.4f} with {entry['search_params']} "
            f"({entry['query_time']['single_ms']:.3f} ms a query)")
        tried.append({k: entry[k] for k in ("key", "search_params", "recall_at_10", "query_time")})
        if best is None or _better(entry, best[0]):
            best = (entry, index)
        following = options[i + 1].kind if i + 1 < len(options) else None
        if entry["target_met"] and not (choice.kind in EXACT_VECTOR_TYPES and following in EXACT_VECTOR_TYPES):
            break
    entry, index = best
    entry["tried"] = tried
    index.write(root / entry["file"])
    return entry


def _validate(root: Path, folder: layout.EmbeddingFolder, modality: str, index: VectorIndex, store: VectorStore,
              tuning: Tuning) -> dict[str, Any]:
    """Tune the search parameters (:meth:`VectorIndex.tune`) on held-out queries and measure them."""
    q, origin, own = validation_queries(root, folder, modality, tuning.queries, tuning.seed)
    truth = exact_topk(q, store.chunks(), K + (own is not None))[1]
    truth = truth if own is None else drop_rows(truth, own, K)
    recall, curve = index.tune(q, truth, tuning.target, own, tuning.max_query_ms)
    timing = query_time(lambda x: index.search(x, K), q)
    return {"search_params": index.search_params, "recall_at_10": round(recall, 5),
            "target_met": recall >= tuning.target,
            "validation": {"queries": len(q), "from": origin, "against": "exact inner product over every row",
                           "target_recall": tuning.target, "max_query_ms": tuning.max_query_ms, "curve": curve},
            "query_time": timing}


def validation_queries(root: Path, folder: layout.EmbeddingFolder, modality: str, count: int,
                       seed: int) -> tuple[np.ndarray, str, np.ndarray | None]:
    """Held-out query vectors, a seeded sample: rows of another modality (text queries for the image
    index: the searches it will serve), else the modality's own rows, each held out of its own
    results (leave-one-out: the third value, the rows' ids; None for another modality's rows)."""
    others = [m for m in folder.modalities if m != modality]
    source = others[0] if others else modality
    store = VectorStore(root, source, folder.parts, folder.rows)
    rows = np.sort(np.random.default_rng(seed).choice(len(store), min(count, len(store)), replace=False))
    if others:
        return store.take(rows), f"{source} rows (seed {seed})", None
    return store.take(rows), f"{source} rows, each left out of its own results (seed {seed})", rows


def add_parts(index_dir: str | Path, emb_dir: str | Path | None = None,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Add the embedding folder's parts not yet indexed; validate recall again; returns the info."""
    log = log or (lambda _msg: None)
    root = Path(index_dir)
    info = read_info(root)
    folder = select_parts(layout.open_folder(emb_dir or info["source"]), info.get("selected_parts"))
    if str(folder.root.resolve()) != info["source"]:
        raise InputError(f"{root} indexes {info['source']}, not {folder.root.resolve()}; "
                         "use another --out or --rebuild")
    if folder.dim != info["dim"] or not set(info["indexes"]) <= set(folder.modalities):
        raise InputError(f"{folder.root}: {folder.modalities} of width {folder.dim}, but {root} indexes "
                         f"{sorted(info['indexes'])} of width {info['dim']}; rebuild with --rebuild")
    new = [p for p in folder.parts if p not in info["parts"]]
    if not new:
        log(f"{root}: up to date ({len(info['parts'])} parts, {sum(info['rows'])} rows)")
        return info
    if min(new) < max(info["parts"]):
        raise InputError(f"{folder.root}: part {min(new)} is older than the indexed part {max(info['parts'])}; "
                         "row ids would move, so rebuild with --rebuild")
    new_rows = [folder.rows[folder.parts.index(p)] for p in new]
    n = sum(info["rows"]) + sum(new_rows)
    for m, entry in info["indexes"].items():
        need = memory_of(entry["type"], entry["params"], n, folder.dim)
        if need > info["memory_budget"] // len(info["indexes"]):
            raise BudgetError(f"{m} index: {n} vectors in {entry['key']} need {format_size(need)}, over its share of "
                              f"the memory budget; rebuild with --rebuild (and a larger --memory-budget)")
    for p in new:
        copy_part(folder.root, root, p, folder.modalities)
    generation = info.get("generation", 0) + 1
    old_files = [root / e["file"] for e in info["indexes"].values()]
    info = {**info, "parts": info["parts"] + new, "rows": info["rows"] + new_rows, "generation": generation}
    grown = layout.EmbeddingFolder(root, info["parts"], info["rows"], folder.modalities, folder.dim)
    for m, entry in info["indexes"].items():
        store = VectorStore(root, m, info["parts"], info["rows"])
        index = VectorIndex(read_faiss(root / entry["file"], entry["type"], writable=True), entry["type"],
                            entry["key"], entry["search_params"], store)
        t0 = time.perf_counter()
        index.add_blocks(VectorStore(root, m, new, new_rows).chunks())
        entry = {**entry, "vectors": n, "file": index_file(root, m, generation).name,
                 "memory_bytes": memory_of(entry["type"], entry["params"], n, folder.dim),
                 "add_seconds": round(time.perf_counter() - t0, 3)}
        tuning = Tuning(info["target_recall"], info.get("max_query_ms", 0.0), QUERIES, info["seed"])
        entry.update(_validate(root, grown, m, index, store, tuning))
        index.write(root / entry["file"])
        info["indexes"][m] = entry
        log(f"{m}: added parts {new} ({sum(new_rows)} rows); recall@{K} {entry['recall_at_10']:.4f}")
    atomic_write_json(root / INFO_FILE, info)
    for path in old_files:      # readers that opened them keep their open file (POSIX)
        path.unlink(missing_ok=True)
    return info


__all__ = ["DEFAULT_BUDGET", "DEFAULT_MAX_QUERY_MS", "DEFAULT_TARGET_RECALL", "INFO_FILE", "add_parts", "build_index",
           "index_file", "read_info", "validation_queries"]
