"""A toy third modality added through the public API alone: registered, trained against a locked
image tower with the Trainer, saved, loaded and embedded."""
import json

import pytest
import torch
from torch import nn

import tether
from tether import ImageTowerConfig, Modality, ModelConfig, TowerConfig
from tether.models import MODALITIES
from tether.train import TrainConfig, Trainer

DIM, CLASSES, BATCH = 8, 4, 16


class VectorTower(nn.Module):
    """A small MLP over fixed-length float vectors."""

    def __init__(self, dim: int = DIM, width: int = 32) -> None:
        super().__init__()
        self.output_dim = width
        self.net = nn.Sequential(nn.Linear(dim, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.net(vectors)


class VectorProcessor:
    """One list/array of ``dim`` numbers -> one float row; rows stack into a batch."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def __call__(self, item) -> torch.Tensor:
        row = torch.as_tensor(item, dtype=torch.float32)
        if row.shape != (self.dim,):
            raise ValueError(f"expected a vector of {self.dim} numbers, got shape {tuple(row.shape)}")
        return row

    def collate(self, rows) -> torch.Tensor:
        return torch.stack(list(rows))


@pytest.fixture
def vector_modality():
    tether.register_modality(Modality(
        name="vector", config_class=TowerConfig, input_name="vectors",
        build_processor=lambda cfg, files: VectorProcessor(cfg.options["dim"])))
    yield
    MODALITIES.pop("vector", None)


class PairsOfClasses:
    """TrainData: the same batch every step, (pixels, vectors) of one class per row."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        labels = torch.arange(BATCH) % CLASSES
        colours = torch.randn(CLASSES, 3, 1, 1, generator=g)
        self.pixels = colours[labels].expand(-1, 3, 28, 28) + 0.05 * torch.randn(BATCH, 3, 28, 28, generator=g)
        self.vectors = torch.eye(CLASSES, DIM)[labels] + 0.05 * torch.randn(BATCH, DIM, generator=g)

    def batches_per_epoch(self) -> int:
        return 1

    def batches(self, epoch: int, position: int):
        if position == 0:
            yield self.pixels, self.vectors

    def skipped(self) -> dict:
        return {}


@pytest.mark.slow
def test_toy_vector_modality_trains_saves_loads_and_embeds(vector_modality, tmp_path):
    config = ModelConfig(embed_dim=16, towers={
        "image": ImageTowerConfig(kind="vit", image_size=28, patch_size=14, width=32, layers=1, heads=2, act="gelu",
                                  processor={"image_size": 28}),
        "vector": TowerConfig(kind="module", output_dim=32, options={"dim": DIM})})
    torch.manual_seed(0)
    model = tether.create_model(config, towers={"vector": VectorTower()})
    assert model.modalities == ("image", "vector") and isinstance(model.processors["vector"], VectorProcessor)
    image_before = {k: v.clone() for k, v in model.towers["image"].state_dict().items()}

    cfg = TrainConfig(modalities=["image", "vector"], lock=["image"], steps=20, batch_size=BATCH, device="cpu",
                      out_dir=str(tmp_path / "run"), log_every=1, checkpoint_every=100, tensorboard=False,
                      locked_feature_cache_mib=0)
    cfg.optim.lr, cfg.optim.warmup_steps = 5e-3, 0
    Trainer(cfg, model, PairsOfClasses(), progress=False).fit()

    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["kind"] == "train"]
    assert len(losses) == 20 and losses[-1] < 0.5 * losses[0], losses
    for key, value in model.towers["image"].state_dict().items():
        assert torch.equal(value, image_before[key]), key

    vectors = [[1.0] + [0.0] * (DIM - 1), [0.0, 1.0] + [0.0] * (DIM - 2), [0.5] * DIM]
    before = model.embed("vector", vectors)
    assert before.shape == (3, 16) and torch.allclose(before.norm(dim=1), torch.ones(3))
    path = tether.save(model, tmp_path / "model")
    with pytest.raises(ValueError, match="pass the tower itself"):
        tether.load(path)
    loaded = tether.load(path, towers={"vector": VectorTower()})
    assert loaded.modalities == ("image", "vector")
    assert torch.equal(loaded.embed("vector", vectors), before)
    with pytest.raises(ValueError, match="8 numbers"):
        loaded.embed("vector", [[1.0, 2.0]])
