"""tether.data: shards, sources, skip accounting across workers, deterministic order and resume,
rank splitting, and the real offline datasets (Fashion-MNIST, Tux Paint stamps, sklearn digits)."""

from __future__ import annotations

import builtins
import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tether.data import (
    FASHION_MNIST_CLASSES,
    HELDOUT_TEMPLATES,
    TRAIN_TEMPLATES,
    FolderSource,
    ListSource,
    ManifestSource,
    PairDataset,
    PairLoader,
    Sample,
    SkipStats,
    WebDatasetSource,
    build_source,
    format_caption,
    read_index,
    write_shards,
)
from tether.preprocess import PreprocessConfig

BAD_PNG = b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4


def png_bytes(i: int, size: int = 6, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(i)
    arr = rng.integers(0, 256, (size, size, 4 if mode == "RGBA" else 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def synthetic(n: int, bad: dict[int, str] | None = None) -> list[Sample]:
    """n samples with PNG bytes; ``bad`` maps index -> 'corrupt' | 'empty' | 'none'."""
    out = []
    for i in range(n):
        image, caption = png_bytes(i), f"caption number {i}"
        kind = (bad or {}).get(i)
        if kind == "corrupt":
            image = BAD_PNG
        elif kind == "empty":
            caption = "  \n"
        out.append(Sample(f"k{i:03d}", image, caption, i % 3, {"i": i}))
    return out


def keys_of(batches) -> list[str]:
    return [k for b in batches for k in b["keys"]]


def run(dataset: PairDataset, workers: int = 0) -> tuple[list[dict], PairLoader]:
    loader = PairLoader(dataset, num_workers=workers)
    return list(loader), loader


# ------------------------------------------------------------------------------ shards


def test_write_shards_and_read_back(tmp_path):
    jpg = tmp_path / "photo.jpeg"
    Image.new("RGB", (5, 4), (200, 10, 10)).save(jpg)
    samples = [
        Sample("a.b/c", Image.new("L", (3, 3), 7), "grey square", 2, {"lang": {"de": "grau"}}),
        Sample("raw", png_bytes(1), "png bytes", None),
        Sample("file", jpg, "a jpeg file", 0),
        Sample("nothing", None, "no image", 1),
        Sample("text", b"hello world", "not an image", 1),
        Sample("raw", png_bytes(2), "duplicate key", 1),
    ] + [Sample(f"s{i}", png_bytes(i), f"sample {i}", i) for i in range(4)]
    res = write_shards(samples, tmp_path / "out", shard_size=3, split="train", name="toy", class_names=["x", "y", "z"])
    assert [p.name for p in res.shards] == ["train-00000.tar", "train-00001.tar", "train-00002.tar"]
    assert res.counts == [3, 3, 1] and res.num_samples == 7
    assert sorted(r for _, r, _ in res.skipped) == ["duplicate_key", "missing_image", "unknown_image_format"]
    assert not list((tmp_path / "out").glob(".*"))  # no temp files left behind

    with tarfile.open(res.shards[0]) as tf:
        names = tf.getnames()
    assert names[:3] == ["a_b/c.png", "a_b/c.txt", "a_b/c.json"]  # img2dataset layout, dot-free keys
    assert "file.jpg" in names

    index = read_index(tmp_path / "out")
    assert index["name"] == "toy" and index["num_samples"] == 7 and index["class_names"] == ["x", "y", "z"]
    assert index["splits"]["train"]["shards"][0] == {"file": "train-00000.tar", "count": 3}
    assert index["splits"]["train"]["skipped"] == {"duplicate_key": 1, "missing_image": 1, "unknown_image_format": 1}

    got = {s.key: s for s in WebDatasetSource(tmp_path / "out", shuffle=False)}
    assert list(got) == ["a.b/c", "raw", "file", "s0", "s1", "s2", "s3"]  # original keys come back
    assert got["raw"].image == png_bytes(1) and got["raw"].label is None
    assert got["file"].image == jpg.read_bytes()
    assert got["a.b/c"].caption == "grey square" and got["a.b/c"].label == 2
    assert got["a.b/c"].extra["lang"] == {"de": "grau"} and got["a.b/c"].extra["shard"] == "train-00000.tar"
    assert Image.open(io.BytesIO(got["a.b/c"].image)).getpixel((0, 0)) == 7  # lossless PNG

    # a second split shares index.json; a rewrite with fewer shards removes the stale ones
    write_shards(samples[6:8], tmp_path / "out", shard_size=1, split="validation")
    write_shards(samples[6:], tmp_path / "out", shard_size=10, split="train")
    index = read_index(tmp_path / "out")
    assert set(index["splits"]) == {"train", "validation"} and index["num_samples"] == 4 + 2
    assert sorted(p.name for p in (tmp_path / "out").glob("train-*.tar")) == ["train-00000.tar"]
    assert len(WebDatasetSource(tmp_path / "out", split="validation")) == 2
    with pytest.raises(ValueError, match="split="):
        WebDatasetSource(tmp_path / "out")


def test_shard_patterns_and_counts_without_index(tmp_path):
    write_shards(synthetic(7), tmp_path, shard_size=3)
    (tmp_path / "index.json").unlink()  # counts must then come from a header scan
    for urls in (tmp_path / "all-{00000..00002}.tar", str(tmp_path / "all-*.tar"), tmp_path,
                 [tmp_path / "all-00000.tar", tmp_path / "all-00001.tar", tmp_path / "all-00002.tar"]):
        src = WebDatasetSource(urls, shuffle=False)
        assert src.counts == [3, 3, 1]
        assert [s.key for s in src] == [f"k{i:03d}" for i in range(7)]
    with pytest.raises(FileNotFoundError, match="7 of 10 shard.*do not exist: .*all-00003.tar"):
        WebDatasetSource(tmp_path / "all-{00000..00009}.tar")
    with pytest.raises(ValueError, match="not a local path"):
        WebDatasetSource("https://example.com/shard-0.tar")


def test_corrupt_image_and_empty_caption_in_shard_counted_across_two_workers(tmp_path):
    write_shards(synthetic(20, {3: "corrupt", 11: "empty", 17: "corrupt"}), tmp_path, shard_size=5)
    tok_free = PairDataset(WebDatasetSource(tmp_path), 8, batch_size=3, seed=4)
    batches, loader = run(tok_free, workers=2)
    assert loader.stats.counts == Counter({"corrupt_image": 2, "empty_caption": 1})
    assert loader.stats.positions == 20 and loader.stats.kept == 17
    assert {e[0] for e in loader.stats.examples["corrupt_image"]} == {"k003", "k017"}
    assert sorted(keys_of(batches)) == sorted(f"k{i:03d}" for i in range(20) if i not in (3, 11, 17))
    for b in batches:
        assert b["pixels"].shape == (len(b["keys"]), 3, 8, 8) and b["pixels"].dtype == torch.float32
        assert b["labels"].tolist() == [int(k[1:]) % 3 for k in b["keys"]]
    assert "corrupt_image 2" in loader.stats.summary()

    # a truncated shard: its unreadable records are skipped and counted, the run goes on
    shard = sorted(tmp_path.glob("all-*.tar"))[1]
    shard.write_bytes(shard.read_bytes()[:1500])
    _, loader = run(PairDataset(WebDatasetSource(tmp_path), 8, batch_size=3), workers=2)
    assert loader.stats.positions == 20 and loader.stats.counts["unreadable_shard"] >= 4


def test_tokenized_batches_and_map_style_skips_with_workers(tmp_path):
    from tether.tokenizer import Tokenizer

    tok = Tokenizer.train_bpe([f"caption number {i}" for i in range(50)], vocab_size=600, context_length=12)
    samples = synthetic(13, {2: "corrupt", 8: "empty"})
    samples[5] = Sample("gone", tmp_path / "missing.png", "a missing file", 0)
    ds = PairDataset(ListSource(samples), 16, tok, batch_size=4, seed=0, return_extra=True)
    batches, loader = run(ds, workers=2)
    assert loader.stats.counts == Counter({"corrupt_image": 1, "empty_caption": 1, "missing_image": 1})
    for b in batches:
        assert b["input_ids"].shape == (len(b["texts"]), 12)
        assert torch.equal(b["input_ids"], tok(b["texts"])) if b["texts"] else True
        assert [e["i"] for e in b["extra"]] == [int(k[1:]) for k in b["keys"]]


# ---------------------------------------------------------------------------- manifests


def _images_dir(tmp_path: Path, n: int) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(n):
        (d / f"im{i}.png").write_bytes(png_bytes(i))
    return d


def test_manifest_csv_relative_paths_labels_and_missing_file(tmp_path):
    _images_dir(tmp_path, 4)
    (tmp_path / "pairs.csv").write_text(
        "file,text,cls,lang\n"
        "imgs/im0.png,a red thing,cat,en\n"
        f"{tmp_path / 'imgs' / 'im1.png'},\"a caption, with a comma\",dog,en\n"
        "imgs/missing.png,not there,cat,fr\n"
        "imgs/im3.png,,dog,en\n", encoding="utf-8")
    src = ManifestSource(tmp_path / "pairs.csv", image_column="file", caption_column="text", label_column="cls")
    assert len(src) == 4 and src.class_names == ["cat", "dog"]
    s0, s1 = src[0], src[1]
    assert s0.image == tmp_path / "imgs" / "im0.png" and s0.label == 0 and s0.extra["lang"] == "en"
    assert s1.caption == "a caption, with a comma" and s1.label == 1
    batches, loader = run(PairDataset(src, 8, batch_size=2, shuffle=False), workers=2)
    assert keys_of(batches) == ["imgs/im0.png", str(tmp_path / "imgs" / "im1.png")]
    assert loader.stats.counts == Counter({"missing_image": 1, "empty_caption": 1})

    with pytest.raises(ValueError, match=r"column\(s\) \['image', 'caption'\] not found"):
        ManifestSource(tmp_path / "pairs.csv")
    with pytest.raises(ValueError, match="label"):
        ManifestSource(tmp_path / "pairs.csv", image_column="file", caption_column="text", label_column="label")
    # the default label column is optional
    assert ManifestSource(tmp_path / "pairs.csv", image_column="file", caption_column="text")[0].label is None


def test_manifest_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    _images_dir(tmp_path, 3)
    table = pa.table({"image": ["imgs/im0.png", "imgs/im1.png", "imgs/nope.png"], "caption": ["one", "two", "three"],
                      "label": [0, 1, None]})
    pq.write_table(table, tmp_path / "pairs.parquet")
    src = ManifestSource(tmp_path / "pairs.parquet")
    assert [src[i].label for i in range(3)] == [0, 1, None]
    _, loader = run(PairDataset(src, 8, batch_size=2))
    assert loader.stats.kept == 2 and loader.stats.counts == Counter({"missing_image": 1})


def test_parquet_without_pyarrow_says_so(tmp_path, monkeypatch):
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError("no pyarrow here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        ManifestSource(tmp_path / "x.parquet")


def test_folder_source_sidecars_and_labels(tmp_path):
    for cls, names in {"cats": ["a", "b"], "dogs": ["c"]}.items():
        (tmp_path / cls).mkdir()
        for n in names:
            (tmp_path / cls / f"{n}.png").write_bytes(png_bytes(ord(n)))
    (tmp_path / "cats" / "a.txt").write_text("\n  A cat on a mat.  \nsecond line\n")
    (tmp_path / "dogs" / "c.txt").write_text("A dog.\nde=Ein Hund.")
    # cats/b.png has no sidecar
    src = FolderSource(tmp_path, labels="parent")
    assert src.class_names == ["cats", "dogs"] and len(src) == 3
    assert src[0].caption == "A cat on a mat." and src[0].label == 0 and src[0].key == "cats/a"
    assert FolderSource(tmp_path, caption="whole")[2].caption == "A dog. de=Ein Hund."
    assert FolderSource(tmp_path)[0].label is None
    _, loader = run(PairDataset(src, 8, batch_size=2), workers=2)
    assert loader.stats.kept == 2 and loader.stats.counts == Counter({"missing_caption": 1})
    assert loader.stats.examples["missing_caption"][0][0] == "cats/b"


# ----------------------------------------------------------------- order and resume


def test_map_style_order_is_deterministic_and_resumes_exactly():
    src = ListSource(synthetic(37, {6: "corrupt", 20: "empty"}))

    def stream(epoch, start=0, workers=0):
        ds = PairDataset(src, 8, batch_size=5, seed=11, epoch=epoch, start=start, train_transform=True,
                         crop_scale=(0.3, 1.0))
        return run(ds, workers)[0]

    full = stream(3)
    keys = keys_of(full)
    kept = set(keys)
    assert len(keys) == 35 and len(full) == 8
    assert keys == keys_of(stream(3)) and keys != keys_of(stream(4)) and kept == set(keys_of(stream(4)))
    # independent of the worker count, random crops included
    full2 = stream(3, workers=2)
    assert keys_of(full2) == keys
    assert all(torch.equal(a["pixels"], b["pixels"]) for a, b in zip(full, full2))
    assert [b["samples_consumed"] for b in full] == [5, 10, 15, 20, 25, 30, 35, 37]
    # the epoch is a fixed permutation; resuming at any position gives exactly the rest of it
    by_position = _position_keys(src, seed=11, epoch=3)
    assert keys == [k for k in by_position if k in kept]
    for start in (0, 5, 15, 35, 37, 3, 36):
        tail = stream(3, start=start, workers=2)
        assert keys_of(tail) == [k for k in by_position[start:] if k in kept], start
        if start % 5 == 0:  # at a step boundary the batches (and their crops) line up too
            rest = full[start // 5:]
            assert [b["keys"] for b in tail] == [b["keys"] for b in rest]
            assert all(torch.equal(a["pixels"], b["pixels"]) for a, b in zip(tail, rest))


def _position_keys(src, seed, epoch):
    from tether.data import epoch_permutation

    return [src[i].key for i in epoch_permutation(len(src), seed, epoch)]


def test_pair_loader_state_dict_resume():
    src = ListSource(synthetic(30))
    ds = PairDataset(src, 8, batch_size=4, seed=2, epoch=1)
    full = keys_of(run(ds, 2)[0])
    loader = PairLoader(PairDataset(src, 8, batch_size=4, seed=2, epoch=1), num_workers=2)
    seen = []
    for i, batch in enumerate(loader):
        seen += batch["keys"]
        if i == 2:
            break
    state = loader.state_dict()
    assert state == {"epoch": 1, "samples_consumed": 12, "seed": 2}
    fresh = PairLoader(PairDataset(src, 8, batch_size=4, seed=2), num_workers=2)
    fresh.load_state_dict(json.loads(json.dumps(state)))
    assert seen + keys_of(fresh) == full


def test_webdataset_order_and_resume_with_two_workers(tmp_path):
    samples = synthetic(41, {7: "corrupt"})
    write_shards(samples[:9], tmp_path, shard_size=3, split="a")  # uneven shards: 3,3,3 + 8,8,8,8
    write_shards(samples[9:], tmp_path, shard_size=8, split="b")
    shards = sorted(tmp_path.glob("*.tar"))
    for buffer in (0, 6):
        def stream(start=0, workers=2, epoch=0):
            src = WebDatasetSource(shards, shuffle_buffer=buffer)
            return run(PairDataset(src, 8, batch_size=4, seed=5, epoch=epoch, start=start), workers)[0]

        full = stream()
        keys = keys_of(full)
        assert sorted(keys) == sorted(s.key for s in samples if s.key != "k007")
        assert keys == keys_of(stream()) and keys != keys_of(stream(epoch=1))
        assert [b["samples_consumed"] for b in full] == [4 * (i + 1) for i in range(len(full))]
        for step in (1, 4, 7, len(full)):
            tail = stream(start=4 * step)
            assert keys_of(tail) == keys_of(full[step:]), (buffer, step)
            assert [b["step"] for b in tail] == list(range(step, len(full)))
        with pytest.raises(ValueError, match="step boundaries"):
            stream(start=6)
    assert len(PairDataset(WebDatasetSource(shards), 8, batch_size=4, num_workers=2)) == len(full)


# ------------------------------------------------------------------- ranks and workers


def test_ranks_cover_each_sample_exactly_once():
    src = ListSource(synthetic(24))
    per_rank = []
    for rank in range(3):
        ds = PairDataset(src, 8, batch_size=4, seed=9, rank=rank, world_size=3)
        per_rank.append(keys_of(run(ds, workers=2 if rank == 1 else 0)[0]))
    assert all(len(k) == 8 for k in per_rank)
    assert sorted(sum(per_rank, [])) == sorted(s.key for s in src.samples)
    # step j of all ranks together is the contiguous block [j*B*W, (j+1)*B*W) of the epoch order
    order = _position_keys(src, 9, 0)
    assert sorted(per_rank[0][:4] + per_rank[1][:4] + per_rank[2][:4]) == sorted(order[:12])
    # resume at a position: each rank continues its own share
    tails = [keys_of(run(PairDataset(src, 8, batch_size=4, seed=9, rank=r, world_size=3, start=12))[0])
             for r in range(3)]
    assert [t for t in tails] == [k[4:] for k in per_rank]

    # 25 samples over 3 ranks: padded (wrapped) to 27 so every rank has the same number of batches
    src = ListSource(synthetic(25))
    got = [keys_of(run(PairDataset(src, 8, batch_size=4, rank=r, world_size=3))[0]) for r in range(3)]
    assert [len(k) for k in got] == [9, 9, 9]
    assert set(sum(got, [])) == {s.key for s in src.samples}
    got = [run(PairDataset(src, 8, batch_size=4, rank=r, world_size=3, drop_last=True))[0] for r in range(3)]
    assert [len(b) for b in got] == [2, 2, 2] and len(set(keys_of(sum(got, [])))) == 24


def test_webdataset_ranks_split_shards_and_balance(tmp_path):
    samples = synthetic(48)
    write_shards(samples, tmp_path, shard_size=6)  # 8 equal shards
    got = []
    for rank in range(2):
        src = WebDatasetSource(tmp_path, rank=rank, world_size=2)
        got.append(keys_of(run(PairDataset(src, 8, batch_size=3, seed=1, rank=rank, world_size=2), workers=2)[0]))
        assert set(Counter(s.extra["shard"] for s in src)) and len(list(src)) == 24  # direct iteration splits too
    assert sorted(got[0] + got[1]) == sorted(s.key for s in samples) and not set(got[0]) & set(got[1])

    # unequal shards: every rank yields the same number of batches
    write_shards(samples[:40], tmp_path / "u", shard_size=16)  # 16, 16, 8
    lens = [len(run(PairDataset(WebDatasetSource(tmp_path / "u"), 8, batch_size=4, rank=r, world_size=2), 1)[0])
            for r in range(2)]
    assert lens[0] == lens[1]


def test_skip_stats_merge_and_dict():
    a, b = SkipStats(), SkipStats()
    a.update({"skipped": [{"key": "x", "reason": "corrupt_image", "detail": "bad"}], "n_positions": 4,
              "keys": [1, 2, 3]})
    b.update({"skipped": [{"key": "y", "reason": "empty_caption"}], "n_positions": 2, "keys": [1]})
    a.merge(b)
    d = a.to_dict()
    assert d["positions"] == 6 and d["kept"] == 4 and d["by_reason"] == {"corrupt_image": 1, "empty_caption": 1}


# ------------------------------------------------------------------------ spec


def test_build_source_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown type 'lmdb'"):
        build_source({"type": "lmdb", "path": "x"})
    with pytest.raises(ValueError, match="has no 'type'"):
        build_source({"path": "x"})
    with pytest.raises(ValueError, match="needs 'path'"):
        build_source({"type": "manifest"})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_source({"type": "manifest", "path": tmp_path / "nope.csv"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['captoin_column'\]"):
        build_source({"type": "manifest", "path": "x.csv", "captoin_column": "text"})
    (tmp_path / "empty.csv").write_text("image,caption\n")
    with pytest.raises(ValueError, match="'train-pairs' yielded 0 samples: .*no rows"):
        build_source({"type": "manifest", "path": tmp_path / "empty.csv", "name": "train-pairs"})
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ValueError, match="yielded 0 samples: no image files"):
        build_source({"type": "folder", "path": tmp_path / "emptydir"})
    write_shards(synthetic(3), tmp_path / "sh", shard_size=2)
    src = build_source({"type": "webdataset", "path": tmp_path / "sh", "shuffle_buffer": 4, "name": "toy"})
    assert isinstance(src, WebDatasetSource) and len(src) == 3 and src.name == "toy"


# -------------------------------------------------------------------- real datasets


def test_fashion_mnist(tmp_path, fashion_mnist):
    from tether.data import build_fashion_mnist, fashion_mnist_arrays, fashion_mnist_source

    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = fashion_mnist_arrays(split)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8 and labels.shape == (n,)
        assert np.bincount(labels).tolist() == [n // 10] * 10  # perfectly balanced
    assert len(FASHION_MNIST_CLASSES) == 10 and FASHION_MNIST_CLASSES[0] == "T-shirt/top"

    # templates: train and held-out never overlap, not even after filling in a class name
    assert not set(TRAIN_TEMPLATES) & set(HELDOUT_TEMPLATES)
    train_caps = {format_caption(t, c) for t in TRAIN_TEMPLATES for c in FASHION_MNIST_CLASSES}
    held_caps = {format_caption(t, c) for t in HELDOUT_TEMPLATES for c in FASHION_MNIST_CLASSES}
    assert not train_caps & held_caps and format_caption("a {}.", "Ankle boot") == "an ankle boot."

    # fast tensor path == the PIL + ImagePreprocessor path, captions drawn per (seed, epoch, index)
    src = fashion_mnist_source("test")
    cfg = PreprocessConfig.preset("siglip", 28)
    fast = next(iter(PairDataset(src, cfg, batch_size=64, seed=3)))
    slow = next(iter(PairDataset(src, cfg, batch_size=64, seed=3, fast_arrays=False)))
    assert fast["keys"] == slow["keys"] and fast["texts"] == slow["texts"]
    assert torch.equal(fast["pixels"], slow["pixels"]) and fast["pixels"].shape == (64, 3, 28, 28)
    assert torch.equal(fast["pixels"][:, 0], fast["pixels"][:, 2])
    assert torch.equal(fast["labels"], torch.as_tensor(fashion_mnist_arrays("test")[1][fast["indices"].numpy()]))
    assert all(any(c == format_caption(t, FASHION_MNIST_CLASSES[y]) for t in TRAIN_TEMPLATES)
               for c, y in zip(fast["texts"], fast["labels"].tolist()))
    again = next(iter(PairDataset(src, cfg, batch_size=64, seed=3, epoch=1)))
    assert again["keys"] != fast["keys"]
    assert len({t for t in next(iter(PairDataset(src, cfg, batch_size=512)))["texts"]}) > 50  # many phrasings

    res = build_fashion_mnist(tmp_path, splits=("train", "test"), shard_size=250, limit=600)
    assert [r.num_samples for r in res.values()] == [600, 600]
    index = read_index(tmp_path)
    assert index["class_names"] == list(FASHION_MNIST_CLASSES) and set(index["splits"]) == {"train", "test"}
    assert index["info"]["heldout_templates"] == list(HELDOUT_TEMPLATES)
    first = next(iter(WebDatasetSource(tmp_path, split="train", shuffle=False)))
    assert first.label == int(fashion_mnist_arrays("train")[1][0]) and first.extra["class_name"]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(first.image))), fashion_mnist_arrays("train")[0][0])


def test_tuxpaint_stamps(tmp_path, tuxpaint_stamps):
    from tether.data import TuxPaintSource, build_tuxpaint

    src = TuxPaintSource()
    assert len(src) > 500
    samples = list(src)
    assert all(s.caption.strip() and s.caption == s.caption.strip() for s in samples)
    assert all(Path(s.image).suffix == ".png" for s in samples)
    assert sum("de" in s.extra["captions"] for s in samples) > 400
    assert src.class_names[0] == "animals" and len(src.class_names) >= 10
    assert {s.label for s in samples} <= set(range(len(src.class_names)))
    assert src.listing_skips["svg_only"] > 0 or src.render_svg
    train, val = TuxPaintSource(split="train"), TuxPaintSource(split="validation")
    assert len(train) + len(val) == len(src) and 0.7 < len(train) / len(src) < 0.9
    assert not {s.key for s in train} & {s.key for s in val}

    build_tuxpaint(tmp_path)
    index = read_index(tmp_path)
    assert index["splits"]["train"]["num_samples"] == len(train)
    assert index["info"]["listing_skips"] == dict(sorted(src.listing_skips.items()))
    ds = PairDataset(WebDatasetSource(tmp_path, split="validation"), 64, batch_size=32, seed=0)
    batches, loader = run(ds, workers=2)
    assert loader.stats.kept == len(val) and loader.stats.skipped == 0
    assert batches[0]["pixels"].shape[1:] == (3, 64, 64)


def test_digits(tmp_path):
    pytest.importorskip("sklearn")
    from tether.data import build_digits, digits_arrays, digits_source

    images, labels = digits_arrays()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8 and images.max() == 255
    assert sorted(set(labels.tolist())) == list(range(10))
    n_train, n_test = len(digits_arrays("train")[1]), len(digits_arrays("test")[1])
    assert n_train + n_test == 1797 and 0.75 < n_train / 1797 < 0.85
    src = digits_source("test")
    assert src[0].caption == f"a photo of the number {src[0].label}." and src[0].key.startswith("digits/")
    batch = next(iter(PairDataset(src, 16, batch_size=8)))
    assert batch["pixels"].shape == (8, 3, 16, 16)
    res = build_digits(tmp_path)
    assert res["train"].num_samples == n_train and read_index(tmp_path)["class_names"] == [str(i) for i in range(10)]
    assert build_source({"type": "digits", "split": "train"}).name == "digits/train"
