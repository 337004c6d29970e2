"""Encoding throughput: tether's ViT-B/32 vs transformers' CLIPModel, same weights.

Builds a randomly initialised ViT-B/32 CLIPModel with transformers, saves it,
loads the same directory with ``tether.load``, checks that both give the same
embeddings, then times image and text encoding alternately (so both see the same
machine state) and prints throughputs and the ratio.

    python bench/bench_encode.py                       # defaults: 32 images, 256 texts
    python bench/bench_encode.py --images 64 --texts 512 --repeats 7
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def build_pair(tmp: str):
    from transformers import CLIPConfig, CLIPModel

    import tether
    torch.manual_seed(0)
    cfg = CLIPConfig(
        projection_dim=512,
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=224, patch_size=32, hidden_act="quick_gelu"),
        text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                         max_position_embeddings=77, hidden_act="quick_gelu", vocab_size=49408,
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=49407),
    )
    hf = CLIPModel(cfg).eval()
    hf.save_pretrained(tmp)
    ours = tether.load(tmp).eval()
    return hf, ours


def inputs(n_images: int, n_texts: int):
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(n_images, 3, 224, 224, generator=g)
    ids = torch.full((n_texts, 77), 49407, dtype=torch.long)
    lengths = torch.randint(5, 30, (n_texts,), generator=g)  # typical caption lengths
    for row, n in enumerate(lengths.tolist()):
        ids[row, 0] = 49406
        ids[row, 1:n] = torch.randint(0, 49405, (n - 1,), generator=g)
        ids[row, n] = 49407
    return pixels, ids


def features(out):
    """transformers 5 may return an output object from get_*_features."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def time_it(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        hf, ours = build_pair(tmp)
    pixels, ids = inputs(args.images, args.texts)
    jobs = {
        ("image", "transformers"): lambda: features(hf.get_image_features(pixel_values=pixels)),
        ("image", "tether"): lambda: ours.encode_image(pixels),
        ("text", "transformers"): lambda: features(hf.get_text_features(input_ids=ids)),
        ("text", "tether"): lambda: ours.encode_text(ids),
    }
    with torch.inference_mode():
        diff_img = (jobs["image", "tether"]() - jobs["image", "transformers"]()).abs().max().item()
        diff_txt = (jobs["text", "tether"]() - jobs["text", "transformers"]()).abs().max().item()
        times = {k: [] for k in jobs}
        for _ in range(args.repeats):  # alternate so drift affects both sides alike
            for key, fn in jobs.items():
                times[key] += time_it(fn, 1)
    count = {"image": args.images, "text": args.texts}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ViT-B/32, fp32, "
          f"{args.images} images/batch, {args.texts} texts/batch, median of {args.repeats}")
    print(f"max |tether - transformers|: images {diff_img:.2e}, texts {diff_txt:.2e}")
    print(f"{'':8}{'transformers/s':>16}{'tether/s':>12}{'ratio':>8}")
    total = {"transformers": 0.0, "tether": 0.0}
    for kind in ("image", "text"):
        rate = {who: count[kind] / statistics.median(times[kind, who]) for who in ("transformers", "tether")}
        for who in total:
            total[who] += statistics.median(times[kind, who])
        print(f"{kind:8}{rate['transformers']:16.1f}{rate['tether']:12.1f}{rate['tether'] / rate['transformers']:8.2f}x")
    print(f"{'both':8}{'':16}{'':12}{total['transformers'] / total['tether']:8.2f}x  (wall time for one image batch + one text batch)")


if __name__ == "__main__":
    main()
