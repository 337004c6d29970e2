"""The pillar point cloud tower (kind "pillars"): order-free, points land in the right cells, bad
input refused in one line, save/load and `tether embed` through the points modality."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import tether
from tether.cli.main import main
from tether.errors import ConfigError, InputError
from tether.models.extend import add_tower
from tether.models.pillars import PillarTower
from tether.modalities import tower_preset

pytestmark = pytest.mark.usefixtures("one_thread")
ATOL = 1e-5  # float32 rounding of per-cell sums over a few hundred points, then a small CNN


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = tether.create_model("tiny-vit-28")
    add_tower(m, "points", tower_preset("points", "pillars"))
    return m.eval()


def _cloud(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)


def test_output_does_not_depend_on_point_order_but_on_the_points():
    torch.manual_seed(0)
    tower = PillarTower(3, (16,), grid=8, conv_widths=(8, 16), width=32).eval()
    points = torch.rand(4, 200, 3) * 2 - 1
    perm = torch.randperm(200)
    with torch.no_grad():
        out = tower(points)
        assert out.shape == (4, 32)
        torch.testing.assert_close(tower(points[:, perm]), out, atol=ATOL, rtol=0)
        assert not torch.allclose(tower(points.flip(0)), out)  # each cloud its own row
        moved = points.clone()
        moved[:, :, 0] = -moved[:, :, 0]  # the mirror image: other cells
        assert not torch.allclose(tower(moved), out, atol=1e-3)


def test_points_are_averaged_into_their_cells_with_a_density_channel():
    tower = PillarTower(3, (4,), grid=4, conv_widths=(8,), width=8).eval()
    # cells are 0.5 wide; (-0.9, 0.9) is the top-left cell (row 0, col 0), (0.6, -0.6) is row 3, col 3
    points = torch.tensor([[[-0.9, 0.9, 0.0], [-0.8, 0.8, 0.1], [0.6, -0.6, 0.2], [0.6, -0.6, 0.2], [0.6, -0.6, 0.2]]])
    with torch.no_grad():
        grid = tower.scatter(points)
        outside = tower.scatter(torch.tensor([[[1.5, 1.5, 0.0]]]))  # beyond the grid: the border cell
        feats = tower.point_mlp(torch.cat([points, (((points[..., :2] + 1) * 2) % 1) * 2 - 1], dim=-1))
    assert grid.shape == (1, 5, 4, 4)
    density = grid[0, -1]
    expected = torch.zeros(4, 4)
    expected[0, 0], expected[3, 3] = math.log(3), math.log(4)  # log(1 + count)
    torch.testing.assert_close(density, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(grid[0, :4, 0, 0], feats[0, :2].mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(grid[0, :4, 3, 3], feats[0, 2], atol=1e-6, rtol=0)
    assert torch.count_nonzero(grid[0, :4].abs().sum(0)) == 2  # every other cell is empty
    assert float(outside[0, -1, 0, 3]) == pytest.approx(math.log(2))


def test_bad_input_is_refused_in_one_line(model):
    tower = model.towers["points"]
    with pytest.raises(ValueError, match=r"^the pillar tower takes \(batch, points, 3\) tensors, got shape \(10, 3\)$"):
        tower(torch.zeros(10, 3))
    with pytest.raises(InputError, match=r"^point cloud: 5 points, the encoder needs at least 16 \(processor.min_points\)$"):
        model.embed("points", [_cloud(50), _cloud(5)])
    with pytest.raises(ConfigError, match=r"^towers.points: a pillar tower needs grid >= 2 .* got grid=1,"):
        add_tower(tether.create_model("tiny-vit-28"), "points", {**tower_preset("points", "pillars"), "grid": 1})


def test_embeddings_through_the_processor_ignore_order_and_round_trip(model, tmp_path):
    clouds = [_cloud(900), _cloud(40, 2), _cloud(512, 3)]  # more, fewer and exactly num_points (512)
    shuffled = [c[np.random.default_rng(i).permutation(len(c))] for i, c in enumerate(clouds)]
    before = model.embed("points", clouds)
    assert before.shape == (3, 64)
    torch.testing.assert_close(model.embed("points", shuffled), before, atol=ATOL, rtol=0)
    loaded = tether.load(tether.save(model, tmp_path / "m"))
    cfg = loaded.config.towers["points"]
    assert (cfg.kind, cfg.grid, cfg.conv_widths, cfg.processor["num_points"]) == ("pillars", 16, (32, 64), 512)
    assert torch.equal(loaded.embed("points", clouds), before)


def test_tether_embed_reads_a_folder_of_clouds(model, tmp_path, capsys):
    path = tether.save(model, tmp_path / "m")
    folder = tmp_path / "clouds"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"c{i}.npy", _cloud(100 + i, i))
    np.savetxt(folder / "small.xyz", _cloud(4))  # too few points: skipped and counted
    rc = main(["embed", "--model", str(path), "--points", str(folder), "--out", str(tmp_path / "emb"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    from tether.curate.layout import read_embeddings
    vectors = read_embeddings(tmp_path / "emb", "points")
    assert vectors.shape == (3, 64)
    summary = json.loads((tmp_path / "emb" / "summary.json").read_text())
    assert summary["counts"]["rows"] == 3 and summary["skips"] == {"invalid_input": 1}
    expected = model.embed("points", [np.load(folder / f"c{i}.npy") for i in range(3)])
    got = torch.from_numpy(np.asarray(vectors, dtype=np.float32))
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=0)  # tether embed writes float16
