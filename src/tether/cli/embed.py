"""``tether embed``: a dataset to an embedding folder in clip-retrieval's layout, resumable (tether.curate)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .engine_options import add_engine_options, engine_options

DESCRIPTION = """\
Embed a dataset into OUT in clip-retrieval's layout, readable by clip-retrieval, autofaiss and
embedding-reader:

  OUT/img_emb/img_emb_0000.npy        image embeddings (float16 by default), L2-normalised
  OUT/text_emb/text_emb_0000.npy      caption embeddings, the same rows
  OUT/audio_emb/audio_emb_0000.npy    other modalities: <modality>_emb/ (--audio DIR ...)
  OUT/metadata/metadata_0000.parquet  key, image_path or url, caption, the source's own columns
  OUT/job.json, OUT/summary.json      the job's parameters; counts, skips by reason, throughput

The inputs are cut into parts of --part-size in a fixed order; each part is written atomically
(metadata last). Rerunning the same command resumes: finished parts are kept, the others are
written, and the folder ends up with exactly the rows of an uninterrupted run. A rerun with
another model, dataset, part size, precision, dtype or modalities is refused. Bad inputs (corrupt
images, empty captions, unreadable shards) are skipped, counted by reason and listed in
summary.json; a sample skipped in one modality is left out of every file of its part.

Inputs (one of):
  --images DIR          every image file under DIR (no captions: image embeddings only)
  --texts FILE          one text per line (text embeddings only)
  --audio DIR           every audio file under DIR (.wav, .flac, .ogg, .mp3 ...); likewise
                        --MODALITY DIR for every other registered modality (docs/modalities.md)
  --data TYPE:PATH      webdataset:SHARDS (img2dataset's layout), manifest:FILE.csv|.parquet,
                        folder:DIR (images + .txt captions), tuxpaint[:DIR], fashion_mnist, digits

MODEL is a checkpoint path (tether, Hugging Face, OpenCLIP, OpenAI), a published name from
`tether models --pretrained` (ViT-B-32/openai) or a Hugging Face Hub id; an architecture name
(ViT-B-32, from `tether models`) needs --random-weights (random init: only for testing pipelines).

Examples:
  tether embed --model ./my-clip --data tuxpaint:/usr/share/tuxpaint/stamps --out emb/
  tether embed --model ./my-clip --data webdataset:shards/ --out emb/ --precision bf16 --workers 4
  tether embed --model ./my-clip --images photos/ --out emb/ --query 'a red bicycle'
  tether embed --model ./my-bound --audio /usr/share/tuxpaint/stamps/symbols/math --out audio-emb/
  tether embed --model ./my-clip --data manifest:pairs.parquet --out emb/ --engine ray --ray-address HOST:6379
  tether embed --model ./my-clip --data tuxpaint --out emb/ --precision bf16 --compare-fp32 500
"""


def add_parser(sub) -> None:
    p = sub.add_parser("embed", help="embed a dataset into clip-retrieval's layout (resumable)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint path, published name (ViT-B-32/openai) or Hub id")
    p.add_argument("--random-weights", action="store_true",
                   help="allow an architecture name (e.g. ViT-B-32) with random weights, to test a pipeline")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="a folder of images (searched recursively)")
    source.add_argument("--texts", metavar="FILE", help="a text file, one text per line")
    source.add_argument("--data", metavar="TYPE:PATH", help="a dataset: webdataset:, manifest:, folder:, tuxpaint...")
    for modality in _file_modalities():
        source.add_argument(f"--{modality}", metavar="DIR", dest=f"files_{modality}",
                            help=f"a folder of {modality} files (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (rerun the same command to resume)")
    p.add_argument("--modalities", help="comma-separated, e.g. image (default: image,text for --data)")
    p.add_argument("--part-size", type=int, default=10_000, help="inputs per part (default 10000)")
    p.add_argument("--dtype", default="float16", choices=("float16", "float32"),
                   help="stored embedding type (default float16, as clip-retrieval)")
    add_engine_options(p, batch_size=64, device=True)
    p.add_argument("--engine", default="local", choices=("local", "ray"),
                   help="local (this process + --workers) or ray (Ray Data actor pool; pip install 'tether[ray]')")
    p.add_argument("--ray-address", help="a Ray cluster (HOST:6379, from `ray start --head`); default: local Ray")
    p.add_argument("--ray-actors", type=int, default=1, help="model replicas in the Ray actor pool (default 1)")
    p.add_argument("--compare-fp32", type=int, default=0, metavar="N",
                   help="also embed the first N inputs in fp32 and report cosine and Recall@1/5/10 agreement")
    p.add_argument("--query", action="append", default=[],
                   help="then print the 5 nearest images for this text (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from tether.curate.embed_job import embed_dataset, summary_line
    from tether.errors import InputError

    if args.query and args.texts:
        raise InputError("--query searches image (or audio ...) embeddings: give --images DIR, --audio DIR or "
                         "--data TYPE:PATH, not --texts")
    source, default = _source(args)
    modalities = tuple(m.strip() for m in args.modalities.split(",") if m.strip()) if args.modalities else default
    options = engine_options(args)
    summary = embed_dataset(args.model, source, args.out, modalities=modalities, part_size=args.part_size,
                            dtype=args.dtype, batch_size=args.batch_size, engine=args.engine,
                            ray_address=args.ray_address, ray_actors=args.ray_actors,
                            compare_fp32=args.compare_fp32, progress=not args.quiet,
                            random_weights=args.random_weights, **options)
    print(summary_line(summary, args.out))
    for s in summary["skipped"][:10]:
        print(f"  skipped {s['key']}: {s['reason']} ({s['detail']})")
    if summary["counts"]["skipped"] > 10:
        print(f"  ... {summary['counts']['skipped'] - 10} more in {Path(args.out) / 'summary.json'}")
    if "agreement" in summary:
        _print_agreement(summary["agreement"])
    for query in args.query:
        _print_nearest(args, query, next(m for m in modalities if m != "text"))
    return 0


def _file_modalities() -> list[str]:
    """Registered modalities other than image and text: each gets ``--NAME DIR``."""
    import tether.models  # noqa: F401  (registers the modalities tether ships)
    from tether.modalities import MODALITIES
    return sorted(m for m in MODALITIES if m not in ("image", "text") and m.isidentifier())


def _source(args) -> tuple[str | dict, tuple[str, ...]]:
    if args.images:
        return f"images:{args.images}", ("image",)
    if args.texts:
        return f"texts:{args.texts}", ("text",)
    for modality in _file_modalities():
        folder = getattr(args, f"files_{modality}", None)
        if folder:
            return {"type": "files", "modality": modality, "path": folder}, (modality,)
    return args.data, ("image", "text")


def _print_agreement(a: dict) -> None:
    cos = ", ".join(f"{m} min {c['min']:.6f} mean {c['mean']:.6f}"
                    for m, c in a["cosine"].items() if c["min"] is not None)
    print(f"{a['precision']} vs fp32 on {a['rows']} rows: cosine {cos}")
    if "recall" in a:
        for precision, recall in a["recall"].items():
            print(f"  {precision}: " + ", ".join(f"{k} {v:.4f}" for k, v in recall.items()))


def _print_nearest(args, query: str, modality: str = "image") -> None:
    """The 5 inputs of ``modality`` nearest to ``query`` among the folder's embeddings."""
    import numpy as np

    from tether.checkpoints import resolve_model
    from tether.curate import read_embeddings, read_metadata
    from tether.embedding import embed

    images = read_embeddings(args.out, modality)
    keys = read_metadata(args.out, columns=["key"]).column("key").to_pylist()
    model = resolve_model(args.model, random_weights=args.random_weights)
    q = embed(model, "text", [query], strict=True, **engine_options(args)).vectors.numpy()[0]
    scores = images @ q
    print(f"query {query!r}:")
    for i in np.argsort(-scores, kind="stable")[:5]:
        print(f"  {scores[i]:+.3f}  {keys[i]}")
