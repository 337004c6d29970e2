"""`tether embed --engine ray` on a local Ray (ray.init(num_cpus=2)): the same parts, rows and embeddings as local."""
import numpy as np
import pytest
from PIL import Image

from tether.curate import embed_dataset, open_folder, read_embeddings, read_metadata
from tether.curate.embed_job import part_record

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'tether[ray]'")
pytest.importorskip("ray.data")

ATOL = 1e-5  # float32 files; the actors embed in other batch shapes than the local run


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    for i in range(11):
        Image.new("RGB", (26 + i, 30), (20 * i, 120, 250 - 20 * i)).save(root / f"p{i:02d}.png")
        (root / f"p{i:02d}.txt").write_text("" if i == 2 else f"a {('red', 'blue', 'green')[i % 3]} shoe\n")
    (root / "p05.png").write_bytes(b"\x89PNG broken")
    return root


def test_ray_engine_writes_the_same_rows_as_the_local_engine(local_ray, tiny_checkpoint, pairs, tmp_path):
    options = {"part_size": 4, "dtype": "float32", "progress": False}
    spec = {"type": "folder", "path": str(pairs)}
    on_ray = embed_dataset(str(tiny_checkpoint), spec, tmp_path / "ray", engine="ray", batch_size=3, **options)
    local = embed_dataset(str(tiny_checkpoint), spec, tmp_path / "local", **options)
    assert open_folder(tmp_path / "ray").parts == [0, 1, 2]
    assert read_metadata(tmp_path / "ray").equals(read_metadata(tmp_path / "local"))
    assert read_metadata(tmp_path / "ray").num_rows == 9                   # 11 pairs, 2 skipped
    for modality in ("image", "text"):
        np.testing.assert_allclose(read_embeddings(tmp_path / "ray", modality),
                                   read_embeddings(tmp_path / "local", modality), atol=ATOL)
    assert on_ray["skips"] == local["skips"] == {"corrupt_image": 1, "empty_caption": 1}
    assert on_ray["skipped"] == local["skipped"] and on_ray["run"]["engine"] == "ray"
    assert [part_record(tmp_path / "ray", p)["skipped"] for p in range(3)] == \
        [part_record(tmp_path / "local", p)["skipped"] for p in range(3)]


def test_a_local_job_resumes_on_ray(local_ray, tiny_checkpoint, pairs, tmp_path):
    """The engine is not one of the job's parameters: parts written locally are kept, Ray writes the rest."""
    spec = {"type": "folder", "path": str(pairs)}
    options = {"part_size": 4, "dtype": "float32", "progress": False, "modalities": ("image",)}
    embed_dataset(str(tiny_checkpoint), spec, tmp_path / "full", **options)
    embed_dataset(str(tiny_checkpoint), spec, tmp_path / "mixed", **options)
    for p in (1, 2):
        (tmp_path / "mixed" / "metadata" / f"metadata_{p:04d}.parquet").unlink()
    summary = embed_dataset(str(tiny_checkpoint), spec, tmp_path / "mixed", engine="ray", **options)
    assert summary["run"]["parts_written"] == 2 and summary["complete"]
    assert read_metadata(tmp_path / "mixed").equals(read_metadata(tmp_path / "full"))
    np.testing.assert_allclose(read_embeddings(tmp_path / "mixed", "image"),
                               read_embeddings(tmp_path / "full", "image"), atol=ATOL)
