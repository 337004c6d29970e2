"""`tether embed` as a job (tether.curate.embed_dataset): clip-retrieval's layout, skips, resume after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tether
from tether.cli.main import main
from tether.curate import JobError, embed_dataset, open_folder, read_embeddings, read_metadata
from tether.curate.layout import embedding_path, finished_parts, metadata_path
from tether.data import FolderSource, write_shards
from tether.embedding import embed

pytestmark = pytest.mark.usefixtures("one_thread")

N_IMAGES = 14
CORRUPT, EMPTY_CAPTION, NO_SIDECAR = 7, 4, 9
# float32 files; rows embedded in other batch shapes differ by float32 rounding of a unit vector
ATOL = 1e-5


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """14 captioned images; one corrupt, one with an empty caption, one without a sidecar."""
    root = tmp_path_factory.mktemp("pairs")
    colours = ("red", "green", "blue", "small", "large")
    for i in range(N_IMAGES):
        Image.new("RGB", (28 + i, 24 + 2 * i), (17 * i, 90, 200 - 9 * i)).save(root / f"img{i:02d}.png")
        caption = "   " if i == EMPTY_CAPTION else f"a {colours[i % 5]} cat"
        if i != NO_SIDECAR:
            (root / f"img{i:02d}.txt").write_text(caption + "\n")
    (root / f"img{CORRUPT:02d}.png").write_bytes(b"definitely not a png")
    return root


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return tether.load(tiny_checkpoint).eval()


def _kept():
    return [i for i in range(N_IMAGES) if i not in (CORRUPT, EMPTY_CAPTION, NO_SIDECAR)]


def _job(checkpoint, pairs, out, **kw):
    options = {"part_size": 4, "dtype": "float32", "progress": False, **kw}
    return embed_dataset(str(checkpoint), {"type": "folder", "path": str(pairs)}, out, **options)


def test_writes_clip_retrievals_layout_with_metadata_and_counted_skips(tiny_checkpoint, model, pairs, tmp_path):
    summary = _job(tiny_checkpoint, pairs, tmp_path)
    folder = open_folder(tmp_path)
    assert folder.parts == [0, 1, 2, 3] and folder.modalities == ["image", "text"] and folder.dim == 64
    meta = read_metadata(tmp_path)
    keys = [f"img{i:02d}" for i in _kept()]
    assert meta.column("key").to_pylist() == keys            # the other samples keep their rows, in order
    assert meta.column("image_path").to_pylist() == [str(pairs / f"{k}.png") for k in keys]
    assert meta.column("caption").to_pylist() == [(pairs / f"{k}.txt").read_text().strip() for k in keys]
    assert {"source", "path"} <= set(meta.column_names)
    # every row is what the engine gives for that image / caption on its own
    images = embed(model, "image", [pairs / f"{k}.png" for k in keys], strict=True).vectors.numpy()
    texts = embed(model, "text", meta.column("caption").to_pylist(), strict=True).vectors.numpy()
    np.testing.assert_allclose(read_embeddings(tmp_path, "image"), images, atol=ATOL)
    np.testing.assert_allclose(read_embeddings(tmp_path, "text"), texts, atol=ATOL)
    assert summary["counts"] == {"inputs": N_IMAGES, "read": N_IMAGES, "rows": len(keys), "skipped": 3,
                                 "parts": 4, "parts_expected": 4}
    assert summary["skips"] == {"corrupt_image": 1, "empty_caption": 1, "missing_caption": 1}
    assert [(s["key"], s["reason"]) for s in summary["skipped"]] == [
        ("img04", "empty_caption"), ("img07", "corrupt_image"), ("img09", "missing_caption")]
    assert json.loads((tmp_path / "summary.json").read_text())["counts"] == summary["counts"]
    assert summary["throughput"]["samples_per_s"] > 0 and summary["precision"] == "fp32"


def test_float16_is_the_default_dtype(tiny_checkpoint, pairs, tmp_path):
    _job(tiny_checkpoint, pairs, tmp_path, dtype="float16", modalities=("image",), part_size=20)
    assert np.load(embedding_path(tmp_path, "image", 0)).dtype == np.float16
    assert not (tmp_path / "text_emb").exists()
    # image-only: an empty caption is no reason to skip; the missing sidecar still is (the folder source's rule)
    assert read_metadata(tmp_path).num_rows == N_IMAGES - 2


def test_webdataset_shards_give_the_same_rows_as_the_folder(tiny_checkpoint, pairs, tmp_path):
    source = FolderSource(pairs)
    good = [source.sample(i) for i in _kept() + [EMPTY_CAPTION]]
    write_shards(good, tmp_path / "shards", shard_size=3)     # parts of 4 cross shard boundaries
    shards = embed_dataset(str(tiny_checkpoint), f"webdataset:{tmp_path / 'shards'}", tmp_path / "a",
                           part_size=4, dtype="float32", progress=False)
    folder = _job(tiny_checkpoint, pairs, tmp_path / "b")
    keys = read_metadata(tmp_path / "a").column("key").to_pylist()
    assert keys == read_metadata(tmp_path / "b").column("key").to_pylist()
    np.testing.assert_allclose(read_embeddings(tmp_path / "a", "image"), read_embeddings(tmp_path / "b", "image"),
                               atol=ATOL)
    assert shards["skips"] == {"empty_caption": 1} and folder["counts"]["rows"] == len(keys)


def _cli(out, pairs, checkpoint, kill=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TETHER_TEST_KILL", None)
    if kill:
        env["TETHER_TEST_KILL"] = kill
    cmd = [sys.executable, "-m", "tether.cli.main", "embed", "--model", str(checkpoint), "--data",
           f"folder:{pairs}", "--out", str(out), "--part-size", "4", "--dtype", "float32", "--quiet"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_sigkill_at_any_point_then_the_same_command_gives_the_uninterrupted_rows(tiny_checkpoint, pairs, tmp_path):
    reference = tmp_path / "reference"
    assert main(["embed", "--model", str(tiny_checkpoint), "--data", f"folder:{pairs}", "--out", str(reference),
                 "--part-size", "4", "--dtype", "float32", "--quiet"]) == 0
    out = tmp_path / "killed"
    # mid-part: part 1's embeddings are on disk, its metadata is not
    run = _cli(out, pairs, tiny_checkpoint, kill="1:files")
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert finished_parts(out) == [0] and embedding_path(out, "image", 1).is_file()
    assert not metadata_path(out, 1).exists()
    # then killed right after finishing part 2
    run = _cli(out, pairs, tiny_checkpoint, kill="2:written")
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert finished_parts(out) == [0, 1, 2]
    run = _cli(out, pairs, tiny_checkpoint)
    assert run.returncode == 0, run.stderr
    assert "embedded 11 of 14 inputs in 4 part(s)" in run.stdout
    assert read_metadata(out).equals(read_metadata(reference))
    for modality in ("image", "text"):
        np.testing.assert_allclose(read_embeddings(out, modality), read_embeddings(reference, modality), atol=ATOL)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["rows"] == 11 and summary["run"]["parts_written"] == 1
    assert summary["skips"] == {"corrupt_image": 1, "empty_caption": 1, "missing_caption": 1}


def test_a_rerun_with_other_parameters_is_refused(tiny_checkpoint, pairs, tmp_path):
    _job(tiny_checkpoint, pairs, tmp_path, modalities=("text",))
    with pytest.raises(JobError, match=r"part_size 3 \(was 4\)") as err:
        _job(tiny_checkpoint, pairs, tmp_path, modalities=("text",), part_size=3)
    assert "\n" not in str(err.value)
    with pytest.raises(JobError, match=r"precision 'bf16' \(was 'fp32'\)"):
        _job(tiny_checkpoint, pairs, tmp_path, modalities=("text",), precision="bf16")
    with pytest.raises(JobError, match="modalities"):
        _job(tiny_checkpoint, pairs, tmp_path)
    (tmp_path / "job.json").unlink()
    with pytest.raises(JobError, match="no job.json"):
        _job(tiny_checkpoint, pairs, tmp_path, modalities=("text",))


def test_bad_arguments_are_one_line_errors(tiny_checkpoint, pairs, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(JobError, match="empty"):
        embed_dataset(str(tiny_checkpoint), f"texts:{tmp_path / 'empty.txt'}", tmp_path / "o", modalities=("text",))
    with pytest.raises(JobError, match="part_size"):
        _job(tiny_checkpoint, pairs, tmp_path / "o", part_size=0)
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        _job(tiny_checkpoint, pairs, tmp_path / "o", precision="fp16")
    assert not (tmp_path / "o").exists()                       # nothing written before the checks
    with pytest.raises(JobError, match="unknown type 'shards'"):
        embed_dataset(str(tiny_checkpoint), "shards:x", tmp_path / "o")


def test_bf16_agreement_with_fp32_is_reported(tiny_checkpoint, pairs, tmp_path):
    summary = _job(tiny_checkpoint, pairs, tmp_path, precision="bf16", compare_fp32=10)
    agreement = json.loads((tmp_path / "summary.json").read_text())["agreement"]
    assert agreement == summary["agreement"] and agreement["rows"] == 7     # 10 inputs, 3 of them skipped
    for modality in ("image", "text"):
        assert 0.999 <= agreement["cosine"][modality]["min"] <= agreement["cosine"][modality]["mean"] <= 1 + 1e-6
    assert set(agreement["recall"]["fp32"]) == {f"{d}_retrieval_recall@{k}" for d in ("image", "text")
                                                for k in (1, 5, 10)}
    assert agreement["recall"]["fp32"]["image_retrieval_recall@10"] == 1.0   # 7 candidates


def test_cli_images_texts_and_query(tiny_checkpoint, pairs, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("a red cat\n\na blue shoe\n")
    assert main(["embed", "--model", str(tiny_checkpoint), "--texts", str(texts), "--out", str(tmp_path / "t"),
                 "--quiet"]) == 0
    assert "embedded 2 of 3 inputs" in capsys.readouterr().out
    assert read_metadata(tmp_path / "t").column("key").to_pylist() == ["line1", "line3"]
    assert open_folder(tmp_path / "t").modalities == ["text"]
    out = tmp_path / "i"
    assert main(["embed", "--model", str(tiny_checkpoint), "--images", str(pairs), "--out", str(out), "--quiet",
                 "--query", "a red cat"]) == 0
    printed = capsys.readouterr().out
    assert f"embedded {N_IMAGES - 1} of {N_IMAGES} inputs" in printed and "corrupt_image" in printed
    meta = read_metadata(out)
    assert "caption" not in meta.column_names and meta.column("key")[0].as_py() == "img00.png"
    listed = printed.split("query 'a red cat':")[1].split()
    assert len(listed) == 10 and set(listed[1::2]) <= set(meta.column("key").to_pylist())
