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
