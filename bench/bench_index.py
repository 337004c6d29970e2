"""Index choice: tether's (autofaiss's rule + recall tuning) vs autofaiss itself vs plain FAISS HNSW.

Data (one modality, the image index, as `tether index` builds it):

* ``clustered``: ``--rows`` x ``--dim`` unit vectors around 1,000 random centres (seeded), float16
  parts as `tether embed` writes them, each row with a "text" pair drawn from the same
  distribution; 1,000 held-out queries from it too, never indexed;
* ``fmnist``: Fashion-MNIST's 70,000 images (train + test) embedded by ``--model`` (the demo's),
  their captions as the text rows;
  the held-out queries are the embeddings of 1,000 captions ("an image of a <class>." in the ten
  training phrasings), i.e. text-to-image search.

For each method, in one run on the same data: recall@10 against exact inner product over every
row, queries/s in one batch of all queries and one query at a time, build seconds, the index's
resident memory (FAISS's own layout; the serialized size alongside). Methods:

* ``tether``: ``tether.search.build_index`` of the image rows under ``--budget`` (choice, then tuning
  to ``--target-recall`` / ``--max-query-ms``, tether's defaults unless given, on its own validation
  queries: the rows' text pairs, other draws than the held-out queries measured here);
* ``autofaiss``: ``autofaiss.build_index`` from the peer venv bench/.venv-autofaiss under the same
  ``max_index_memory_usage`` (its own choice and nprobe/efSearch tuning under
  ``--autofaiss-query-ms``); skipped with a note when the venv is missing;
* ``hnsw32``: plain ``IndexHNSWFlat(d, 32)``, FAISS defaults (efConstruction 40, efSearch 16).

    python bench/bench_index.py --dataset clustered --rows 1000000          # the issue's size
    python bench/bench_index.py --dataset clustered --rows 200000 --out bench/results/index_clustered.json
    python bench/bench_index.py --dataset fmnist --model /work/models/demo/model --out bench/results/index_fmnist.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tether.curate.layout import write_part  # noqa: E402
from tether.search import build_index, open_index, parse_size  # noqa: E402
from tether.search.build import DEFAULT_MAX_QUERY_MS, DEFAULT_TARGET_RECALL  # noqa: E402
from tether.search.recall import exact_topk, recall_at_k  # noqa: E402

AUTOFAISS_PY = ROOT / "bench" / ".venv-autofaiss" / "bin" / "python"
PART = 100_000


def clustered(rows: int, dim: int, seed: int, centres: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dim)).astype(np.float32)

    def draw(n: int) -> np.ndarray:
        x = c[rng.integers(0, centres, n)] + 0.9 * rng.normal(size=(n, dim)).astype(np.float32) / np.sqrt(dim) * 8
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    data = np.concatenate([draw(min(PART, rows - a)) for a in range(0, rows, PART)]).astype(np.float16)
    paired = np.concatenate([draw(min(PART, rows - a)) for a in range(0, rows, PART)]).astype(np.float16)
    return data, paired, draw(1000).astype(np.float32)


def fmnist(model_path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import tether
    from tether.data import FASHION_MNIST_CLASSES, TRAIN_TEMPLATES, format_caption
    from tether.data.fashion_mnist import fashion_mnist_source
    from tether.embedding import embed

    model = tether.load(model_path).eval()
    sources = [fashion_mnist_source(split) for split in ("train", "test")]
    rows = [embed(model, "image", s, batch_size=1000).vectors.numpy() for s in sources]
    paired = [embed(model, "text", s, batch_size=1000).vectors.numpy() for s in sources]   # each row's caption
    captions = [format_caption(t, c) for c in FASHION_MNIST_CLASSES for t in TRAIN_TEMPLATES]
    rng = np.random.default_rng(0)
    texts = embed(model, "text", [captions[i] for i in rng.integers(0, len(captions), 1000)]).vectors.numpy()
    return (np.concatenate(rows).astype(np.float16), np.concatenate(paired).astype(np.float16),
            texts.astype(np.float32))


def write_folder(data: np.ndarray, paired: np.ndarray, root: Path) -> None:
    """The image rows, and as text rows their pairs (as `tether embed` writes both): tether's own
    validation queries come from those, never from the image index's rows."""
    for part, a in enumerate(range(0, len(data), PART)):
        n = len(data[a:a + PART])
        write_part(root, part, {"image": data[a:a + PART], "text": paired[a:a + PART]},
                   {"key": [f"{part}-{i}" for i in range(n)]})


def exact_scores(data: np.ndarray, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
    rows = data[np.where(ids >= 0, ids, 0)].astype(np.float32)
    return np.where(ids >= 0, np.einsum("qd,qkd->qk", queries, rows), -np.inf)


def measure(search, queries: np.ndarray, truth: np.ndarray, data: np.ndarray, singles: int = 200) -> dict:
    """recall@10 (rows tied with the 10th best count as hits), queries/s in a batch and one at a time."""
    t0 = time.perf_counter()
    found = search(queries)
    batch = time.perf_counter() - t0
    kth = exact_scores(data, queries, truth[:, 9:10])[:, 0]
    recall = recall_at_k(found, truth, 10, exact_scores(data, queries, found), kth)
    t0 = time.perf_counter()
    for q in queries[:singles]:
        search(q[None])
    single = time.perf_counter() - t0
    return {"recall_at_10": round(recall, 4), "qps_batch": round(len(queries) / batch, 1),
            "qps_single": round(singles / single, 1)}


def run_tether(emb: Path, work: Path, args: argparse.Namespace, queries: np.ndarray, truth: np.ndarray,
               data: np.ndarray) -> dict:
    t0 = time.perf_counter()
    info = build_index(emb, work / "tether", memory_budget=args.budget, queries=1000, modalities=["image"],
                       target_recall=args.target_recall, max_query_ms=args.max_query_ms)
    seconds = time.perf_counter() - t0
    entry = info["indexes"]["image"]
    index = open_index(work / "tether")
    result = measure(lambda q: np.array([h.ids + [-1] * (10 - len(h.ids)) for h in index.search("image", q, 10)]),
                     queries, truth, data)
    return {"method": "tether", "key": entry["key"], "search_params": entry["search_params"],
            "target_recall": args.target_recall, "max_query_ms": args.max_query_ms,
            "validation_recall": entry["recall_at_10"], "tried": entry["tried"],
            "curve": entry["validation"]["curve"],
            "build_seconds_incl_validation": round(seconds, 1), "build_seconds": entry["build_seconds"],
            "memory_bytes": entry["memory_bytes"], "file_bytes": (work / "tether" / entry["file"]).stat().st_size,
            **result}


def run_hnsw(data: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    import faiss
    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(data.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    for a in range(0, len(data), PART):
        index.add(np.ascontiguousarray(data[a:a + PART], dtype=np.float32))
    seconds = time.perf_counter() - t0
    result = measure(lambda q: index.search(q, 10)[1], queries, truth, data)
    n, d = data.shape
    return {"method": "hnsw32", "key": "HNSW32", "search_params": {"efSearch": index.hnsw.efSearch},
            "build_seconds": round(seconds, 1), "memory_bytes": n * (4 * d + 8 * 32), **result}


AUTOFAISS = r"""
import json, sys, time
from autofaiss import build_index
emb, out, budget, query_ms = sys.argv[1:5]
t0 = time.perf_counter()
build_index(embeddings=emb, index_path=out + "/knn.index", index_infos_path=out + "/infos.json",
            max_index_memory_usage=budget, current_memory_available="10G", metric_type="ip",
            max_index_query_time_ms=float(query_ms), make_direct_map=False)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def run_autofaiss(emb: Path, work: Path, budget: str, query_ms: float, queries, truth, data) -> dict:
    if not AUTOFAISS_PY.is_file():
        return {"method": "autofaiss", "skipped": "no bench/.venv-autofaiss (pip install autofaiss there)"}
    import faiss
    out = work / "autofaiss"
    out.mkdir()
    done = subprocess.run([str(AUTOFAISS_PY), "-c", AUTOFAISS, str(emb / "img_emb"), str(out), budget,
                           str(query_ms)], capture_output=True, text=True)
    if done.returncode != 0:
        return {"method": "autofaiss", "skipped": f"autofaiss failed: {done.stderr.strip().splitlines()[-1:]}"}
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    infos = json.loads((out / "infos.json").read_text())
    index = faiss.read_index(str(out / "knn.index"))
    faiss.ParameterSpace().set_index_parameters(index, infos["index_param"])
    result = measure(lambda q: index.search(q, 10)[1], queries, truth, data)
    return {"method": "autofaiss", "key": infos["index_key"], "search_params": infos["index_param"],
            "build_seconds": round(seconds, 1), "memory_bytes": (out / "knn.index").stat().st_size,
            "autofaiss_infos": {k: v for k, v in infos.items() if k not in ("index_key", "index_param")}, **result}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("clustered", "fmnist"), default="clustered")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--model", help="fmnist: the model that embeds (the demo's)")
    p.add_argument("--budget", default="4GB")
    p.add_argument("--autofaiss-query-ms", type=float, default=10.0)
    p.add_argument("--target-recall", type=float, default=DEFAULT_TARGET_RECALL, help="tether's (its default)")
    p.add_argument("--max-query-ms", type=float, default=DEFAULT_MAX_QUERY_MS, help="tether's (its default)")
    p.add_argument("--note", default="timings measured with other jobs running on a shared 2-core machine",
                   help="written into the report (say 'idle machine' when it was)")
    p.add_argument("--methods", default="tether,autofaiss,hnsw32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args()
    data, paired, queries = (clustered(args.rows, args.dim, args.seed) if args.dataset == "clustered"
                             else fmnist(args.model))
    print(f"{args.dataset}: {data.shape[0]} x {data.shape[1]} rows, {len(queries)} held-out queries", flush=True)
    truth = exact_topk(queries, ((a, data[a:a + PART].astype(np.float32)) for a in range(0, len(data), PART)))[1]
    results = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        work = Path(tmp)
        write_folder(data, paired, work / "emb")
        for method in args.methods.split(","):
            if method == "tether":
                r = run_tether(work / "emb", work, args, queries, truth, data)
            elif method == "autofaiss":
                r = run_autofaiss(work / "emb", work, args.budget, args.autofaiss_query_ms, queries, truth, data)
            else:
                r = run_hnsw(data, queries, truth)
            print(json.dumps(r), flush=True)
            results.append(r)
            write_report(args, data, queries, results)   # after each method: a long run keeps what finished


def write_report(args: argparse.Namespace, data: np.ndarray, queries: np.ndarray, results: list[dict]) -> None:
    report = {"dataset": args.dataset, "rows": int(data.shape[0]), "dim": int(data.shape[1]), "budget": args.budget,
              "budget_bytes": parse_size(args.budget), "queries": len(queries), "results": results,
              "note": args.note}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
