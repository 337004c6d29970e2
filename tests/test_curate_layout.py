"""clip-retrieval's embedding layout: parts written atomically, metadata last, read back row-aligned."""
import numpy as np
import pyarrow.parquet as pq
import pytest

from tether.curate.layout import (LayoutError, embedding_path, finished_parts, metadata_path, open_folder,
                                  read_embeddings, read_metadata, write_part)


def _unit(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_parts_round_trip_in_clip_retrievals_names(tmp_path):
    img0, txt0, img1 = _unit(3, 8, 0), _unit(3, 8, 1), _unit(2, 8, 2)
    write_part(tmp_path, 0, {"image": img0, "text": txt0}, {"key": ["a", "b", "c"], "caption": ["x", "y", "z"]},
               dtype="float32")
    write_part(tmp_path, 1, {"image": img1, "text": img1}, {"key": ["d", "e"], "caption": ["u", None]},
               dtype="float32")
    assert (tmp_path / "img_emb" / "img_emb_0000.npy").is_file()
    assert (tmp_path / "text_emb" / "text_emb_0001.npy").is_file()
    assert (tmp_path / "metadata" / "metadata_0001.parquet").is_file()
    folder = open_folder(tmp_path)
    assert folder.parts == [0, 1] and folder.rows == [3, 2] and len(folder) == 5
    assert folder.modalities == ["image", "text"] and folder.dim == 8
    np.testing.assert_array_equal(read_embeddings(tmp_path, "image"), np.concatenate([img0, img1]))
    assert read_metadata(tmp_path).column("key").to_pylist() == ["a", "b", "c", "d", "e"]


def test_float16_is_the_default_and_stays_within_its_rounding(tmp_path):
    x = _unit(4, 16, 3)
    write_part(tmp_path, 0, {"image": x}, {"key": list("abcd")})
    assert np.load(embedding_path(tmp_path, "image", 0)).dtype == np.float16
    np.testing.assert_allclose(read_embeddings(tmp_path, "image"), x, atol=2 ** -11)  # half precision, |x| <= 1


def test_a_part_without_metadata_is_not_finished(tmp_path):
    write_part(tmp_path, 0, {"image": _unit(2, 4, 0)}, {"key": ["a", "b"]})
    write_part(tmp_path, 1, {"image": _unit(2, 4, 1)}, {"key": ["c", "d"]})
    metadata_path(tmp_path, 1).unlink()  # as if killed between the embeddings and the metadata
    assert finished_parts(tmp_path) == [0]
    assert read_embeddings(tmp_path, "image").shape == (2, 4)


def test_mismatched_rows_and_widths_are_refused_naming_the_file(tmp_path):
    with pytest.raises(LayoutError, match=r"part 0: image embeddings have shape \(3, 4\), expected \(2, D\)"):
        write_part(tmp_path, 0, {"image": _unit(3, 4, 0)}, {"key": ["a", "b"]})
    write_part(tmp_path, 0, {"image": _unit(2, 4, 0)}, {"key": ["a", "b"]})
    write_part(tmp_path, 1, {"image": _unit(2, 6, 1)}, {"key": ["c", "d"]})
    with pytest.raises(LayoutError, match=r"img_emb_0001\.npy: shape \(2, 6\), expected \(2, 4\)"):
        open_folder(tmp_path)
    with pytest.raises(LayoutError, match="no finished parts"):
        open_folder(tmp_path / "empty")


def test_metadata_is_plain_parquet(tmp_path):
    write_part(tmp_path, 0, {"text": _unit(2, 4, 0)}, {"key": ["a", "b"], "caption": ["one", "two"]})
    table = pq.read_table(metadata_path(tmp_path, 0))
    assert table.column_names == ["key", "caption"] and table.num_rows == 2
