"""ModalityPairDataset: batches of any two modalities through their processors, with the image-text
pipeline's order, resume arithmetic and skip accounting; a manifest's column of another modality."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import tether
from tether.data import PairLoader, build_source
from tether.data.modality_pairs import ModalityPairDataset
from tether.errors import DataError, MissingProcessorError
from tether.modalities import get_modality, tower_preset
from tether.models.extend import add_tower

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = tether.create_model("tiny-vit-28")
    add_tower(m, "depth", tower_preset("depth", "tiny"))
    return m


@pytest.fixture
def manifest(tmp_path):
    """Six (depth, image) rows; row 2's depth file is missing, row 4's has no valid pixel."""
    (tmp_path / "d").mkdir()
    lines = ["image,caption,depth"]
    for i in range(6):
        Image.fromarray(np.full((28, 28, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
        if i != 2:
            np.save(tmp_path / "d" / f"{i}.npy", np.full((20, 20), 0.0 if i == 4 else 1.0 + i, np.float32))
        lines.append(f"{i}.png,row {i},d/{i}.npy")
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "pairs.csv"


def _dataset(model, source, **kw):
    return ModalityPairDataset(source, model.processors, ("depth", "image"),
                               prepare={m: get_modality(m).prepare for m in ("depth", "image")}, **kw)


def test_manifest_pairs_batch_through_each_processor_and_count_skips(model, manifest):
    source = build_source({"type": "manifest", "path": str(manifest), "path_columns": ["depth"]})
    loader = PairLoader(_dataset(model, source, batch_size=3, shuffle=False), num_workers=0)
    batches = list(loader)
    assert [b["keys"] for b in batches] == [["0.png", "1.png"], ["3.png", "5.png"]]
    assert batches[0]["depth"].shape == (2, 1, 64, 64) and batches[0]["image"].shape == (2, 3, 28, 28)
    expected = model.processors["depth"](manifest.parent / "d" / "1.npy")
    assert torch.equal(batches[0]["depth"][1], expected)
    assert loader.stats.counts == {"unreadable_input": 1, "invalid_input": 1}
    assert loader.stats.positions == 6 and loader.stats.kept == 4


def test_resume_position_gives_the_tail_of_the_epoch(model, manifest):
    source = build_source({"type": "manifest", "path": str(manifest), "path_columns": ["depth"]})
    whole = [b["keys"] for b in _dataset(model, source, batch_size=2, seed=3)]
    tail = _dataset(model, source, batch_size=2, seed=3)
    tail.set_epoch(0, start=2)
    assert [b["keys"] for b in tail] == whole[1:]


def test_refusals(model, manifest):
    source = build_source({"type": "manifest", "path": str(manifest)})
    with pytest.raises(MissingProcessorError):
        ModalityPairDataset(source, model.processors, ("thermal", "image"))
    with pytest.raises(DataError, match=r"column\(s\) \['imu'\] not found"):
        build_source({"type": "manifest", "path": str(manifest), "path_columns": ["imu"]})


class _Counting:
    """A processor wrapper counting the inputs it processes."""

    def __init__(self, processor):
        self.processor, self.calls = processor, 0

    def __call__(self, item):
        self.calls += 1
        return self.processor(item)

    def collate(self, rows):
        return self.processor.collate(rows)


def test_row_cache_processes_each_file_once_and_gives_the_same_batches(model, manifest):
    source = build_source({"type": "manifest", "path": str(manifest), "path_columns": ["depth"]})
    counting = {m: _Counting(model.processors[m]) for m in ("depth", "image")}
    cached = ModalityPairDataset(source, counting, ("depth", "image"), batch_size=2, seed=1, row_cache_mib=1)
    plain = _dataset(model, source, batch_size=2, seed=1)
    loader = PairLoader(cached, num_workers=0)
    for epoch in range(2):
        loader.set_epoch(epoch)
        plain.set_epoch(epoch)
        for got, want in zip(loader, plain, strict=True):
            assert got["keys"] == want["keys"]
            assert torch.equal(got["depth"], want["depth"]) and torch.equal(got["image"], want["image"])
    # epoch 0: 6 depth files tried (2 refused: missing, no valid pixel), so only 4 images read;
    # epoch 1: only the 2 refused depth files are tried again (refusals are not kept)
    assert counting["image"].calls == 4 and counting["depth"].calls == 6 + 2
    assert cached.row_cache.as_dict() == {"hits": 8, "misses": 12, "entries": 8,
                                          "stored_mib": cached.row_cache.as_dict()["stored_mib"]}
    assert loader.stats.counts == {"unreadable_input": 2, "invalid_input": 2}


def test_row_cache_keeps_nothing_past_its_budget_and_off_by_default(model, manifest):
    source = build_source({"type": "manifest", "path": str(manifest), "path_columns": ["depth"]})
    row = model.processors["image"](str(manifest.parent / "0.png"))
    tiny = _dataset(model, source, batch_size=6, row_cache_mib=1.5 * row.nbytes / 2**20)
    list(tiny)
    assert tiny.row_cache.as_dict()["entries"] == 1 and tiny.row_cache.misses == 6 + 4
    assert _dataset(model, source).row_cache is None
