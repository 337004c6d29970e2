"""Embedding job throughput: images/s from image files to written parts, tether's job vs the loop
users write with transformers, on the same random-init ViT-B/32 weights and the same images.

    python bench/bench_embed_job.py --limit 300 --workers 2 --batch-size 32 --threads 2
    python bench/bench_embed_job.py --limit 300 --ray          # also the Ray engine with 1 and 2 actors

* Weights: a transformers ``CLIPModel`` with ViT-B/32's config, randomly initialised (seed 0), saved
  with ``save_pretrained`` and loaded in tether with ``tether.load`` (bench_encode.py's pair), plus
  tether's offline CLIP BPE tokenizer for the captions of the agreement check.
* Images: the first ``--limit`` PNG stamps of Tux Paint (``/usr/share/tuxpaint/stamps``), sorted,
  linked into one folder that both sides read.
* transformers: the usual loop -- a Dataset opening each file with PIL (``convert("RGB")``), a
  DataLoader with ``--workers`` processes whose ``collate_fn`` is ``CLIPImageProcessor`` (what
  ``CLIPProcessor`` does with images), ``get_image_features``, L2 normalisation, then the rows
  saved as float16 ``.npy`` with a Parquet of paths (the same files as one part of tether's layout).
* tether: ``tether.curate.embed_dataset(model, "images:DIR", out, modalities=("image",))`` with the
  same batch size and workers, fp32 and bf16 (autocast); the model is loaded before the clock starts
  on both sides.
* Runs alternate (transformers, tether fp32, tether bf16, [Ray 1 actor, Ray 2 actors]) ``--repeats``
  times so load changes hit all; the median of each is reported with the ratios.
* Agreement of bf16 with fp32 (``tether.curate.agreement``): per-row cosine of image and caption
  embeddings and image<->text Recall@1/5/10 on the first ``--agree`` Tux Paint stamps (random
  weights: recall is near chance; what matters is that bf16 leaves it unchanged).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
STAMPS = Path("/usr/share/tuxpaint/stamps")


def build_models(tmp: Path) -> tuple[Path, Path]:
    """(transformers folder, tether folder) holding the same random ViT-B/32 weights."""
    from bench_encode import build_pair

    import tether
    from tether.models.processors import clip_bpe_tokenizer

    hf_dir = tmp / "hf"
    _, ours = build_pair(str(hf_dir))
    ours.tokenizer = clip_bpe_tokenizer(77)
    return hf_dir, Path(tether.save(ours, tmp / "tether"))


def link_images(limit: int, folder: Path) -> list[Path]:
    from tether.embedding import find_images

    paths = [p for p in find_images([STAMPS]) if p.suffix.lower() == ".png"][:limit]
    folder.mkdir(parents=True)
    links = []
    for i, p in enumerate(paths):
        link = folder / f"{i:05d}_{p.name}"
        link.symlink_to(p)
        links.append(link)
    return links


class _Files(torch.utils.data.Dataset):
    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image
        return Image.open(self.paths[i]).convert("RGB")


class _Collate:
    def __init__(self, processor):
        self.processor = processor

    def __call__(self, images):
        return self.processor(images=images, return_tensors="pt")["pixel_values"]


def transformers_loop(model, processor, paths, out: Path, batch_size: int, workers: int) -> float:
    """The loop users write; returns images/s from files to the written .npy + .parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    loader = torch.utils.data.DataLoader(_Files(paths), batch_size=batch_size, num_workers=workers,
                                         collate_fn=_Collate(processor))
    rows = []
    with torch.inference_mode():
        for pixels in loader:
            out_ = model.get_image_features(pixel_values=pixels)
            feats = out_ if isinstance(out_, torch.Tensor) else out_.pooler_output
            rows.append(torch.nn.functional.normalize(feats, dim=-1))
    out.mkdir(parents=True)
    np.save(out / "img_emb_0000.npy", torch.cat(rows).numpy().astype(np.float16))
    pq.write_table(pa.table({"image_path": [str(p) for p in paths]}), out / "metadata_0000.parquet")
    return len(paths) / (time.perf_counter() - start)


def forward_only(model, processor, paths, batch_size: int) -> float:
    """images/s of the fp32 ViT-B/32 forward alone, on pixels prepared before the clock starts.

    No job that does the same fp32 arithmetic can run faster than this, so
    ``forward_only / transformers_loop`` is the ceiling of any job's speed-up over the loop.
    """
    from PIL import Image

    batches = [processor(images=[Image.open(p).convert("RGB") for p in paths[i:i + batch_size]],
                         return_tensors="pt")["pixel_values"] for i in range(0, len(paths), batch_size)]
    start = time.perf_counter()
    with torch.inference_mode():
        for pixels in batches:
            model.get_image_features(pixel_values=pixels)
    return len(paths) / (time.perf_counter() - start)


def tether_job(model, folder: Path, out: Path, precision: str, batch_size: int, workers: int, **kw) -> float:
    from tether.curate import embed_dataset

    start = time.perf_counter()
    summary = embed_dataset(model, f"images:{folder}", out, modalities=("image",), precision=precision,
                            batch_size=batch_size, workers=workers, progress=False, **kw)
    assert summary["counts"]["skipped"] == 0, summary["skips"]
    return summary["counts"]["rows"] / (time.perf_counter() - start)


def agreement(tether_dir: Path, n: int, batch_size: int) -> dict:
    from tether.curate.agreement import precision_agreement
    from tether.curate.embed_job import Job

    job = Job(str(tether_dir), {"type": "tuxpaint", "path": str(STAMPS)}, "unused", modalities=("image", "text"),
              part_size=n, precision="bf16", dtype="float32")
    return precision_agreement(job, n, batch_size=batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=300, help="number of Tux Paint PNG stamps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--agree", type=int, default=200, help="stamps for the bf16 agreement (0: skip)")
    parser.add_argument("--ray", action="store_true", help="also time the Ray engine with 1 and 2 actors")
    parser.add_argument("--part-size", type=int, default=None,
                        help="rows per part for tether's runs (Ray hands each actor whole parts: with one part, "
                             "a second actor has nothing to do)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import tether
    from transformers import CLIPImageProcessor, CLIPModel

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        hf_dir, tether_dir = build_models(tmp)
        paths = link_images(args.limit, tmp / "images")
        hf = CLIPModel.from_pretrained(hf_dir).eval()
        processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
        ours = tether.load(tether_dir).eval()
        parts = {"part_size": args.part_size} if args.part_size else {}
        runs = {
            "forward only fp32": lambda out: forward_only(hf, processor, paths, args.batch_size),
            "transformers fp32": lambda out: transformers_loop(hf, processor, paths, out, args.batch_size,
                                                               args.workers),
            "tether fp32": lambda out: tether_job(ours, tmp / "images", out, "fp32", args.batch_size, args.workers,
                                                  **parts),
            "tether bf16": lambda out: tether_job(ours, tmp / "images", out, "bf16", args.batch_size, args.workers,
                                                  **parts),
        }
        if args.ray:
            import ray
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            for actors in (1, 2):
                runs[f"tether fp32 ray x{actors}"] = (
                    lambda out, a=actors: tether_job(str(tether_dir), tmp / "images", out, "fp32", args.batch_size,
                                                     0, engine="ray", ray_actors=a, **parts))
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for r in range(args.repeats):
            for name, run in runs.items():
                load = os.getloadavg()[0]
                rates[name].append(run(tmp / f"out-{r}-{name.replace(' ', '-')}"))
                print(json.dumps({"run": name, "repeat": r, "images_per_s": round(rates[name][-1], 2),
                                  "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}),
                      flush=True)
        theirs = np.load(tmp / "out-0-transformers-fp32" / "img_emb_0000.npy").astype(np.float32)
        from tether.curate import read_embeddings
        mine = read_embeddings(tmp / "out-0-tether-fp32", "image")
        agree = agreement(tether_dir, args.agree, args.batch_size) if args.agree else None
    median = {name: statistics.median(v) for name, v in rates.items()}
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, {len(paths)} images, batch "
          f"{args.batch_size}, {args.workers} workers, median of {args.repeats}")
    for name, rate in median.items():
        print(f"  {name:24} {rate:8.2f} images/s")
    print(f"tether fp32 / transformers fp32: {median['tether fp32'] / median['transformers fp32']:.2f}x")
    ceiling = median["forward only fp32"] / median["transformers fp32"]
    print(f"ceiling at equal fp32 arithmetic (forward only / transformers loop): {ceiling:.2f}x")
    print(f"tether bf16 / tether fp32:       {median['tether bf16'] / median['tether fp32']:.2f}x")
    if args.ray:
        print(f"ray 1 actor / local: {median['tether fp32 ray x1'] / median['tether fp32']:.2f}x; "
              f"ray 2 actors / 1 actor: {median['tether fp32 ray x2'] / median['tether fp32 ray x1']:.2f}x")
    cos = np.sum(theirs * mine, axis=1)
    print(f"tether vs transformers rows (their own preprocessing; tether composites transparency on white): "
          f"cosine mean {cos.mean():.4f}, min {cos.min():.4f}")
    if agree:
        print("bf16 vs fp32 agreement:", json.dumps(agree))


if __name__ == "__main__":
    main()
