"""The point cloud modality: order-free tower and processor, refusals, the engine's skip accounting,
save/load, and the Fashion-MNIST point cloud builder."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import tether
from tether.errors import InputError
from tether.embedding import embed
from tether.models.extend import add_tower
from tether.modalities import tower_preset
from tether.models.pointnet import PointNetTower
from tether.points import PointCloudProcessor, farthest_point_sample, image_to_points, normalize_points

pytestmark = pytest.mark.usefixtures("one_thread")
ATOL = 1e-5  # float32 rounding of sums over a few hundred points


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = tether.create_model("tiny-vit-28")
    add_tower(m, "points", tower_preset("points", "tiny"))
    return m.eval()


def _cloud(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)


def test_tower_output_does_not_depend_on_point_order():
    torch.manual_seed(0)
    tower = PointNetTower(3, (16, 32), 32).eval()
    points = torch.randn(4, 100, 3)
    perm = torch.randperm(100)
    with torch.no_grad():
        torch.testing.assert_close(tower(points[:, perm]), tower(points), atol=ATOL, rtol=0)
        assert not torch.allclose(tower(points), tower(points.flip(0)))  # but it does see the points


def test_embeddings_do_not_depend_on_point_order_through_the_processor(model):
    cloud = _cloud(500)  # more than num_points (128): farthest point sampling picks the same set
    shuffled = cloud[np.random.default_rng(1).permutation(500)]
    small = _cloud(40, 2)  # fewer: repeated whole, the set of points is unchanged
    a = model.embed("points", [cloud, small])
    b = model.embed("points", [shuffled, small[::-1].copy()])
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_farthest_point_sampling_spreads_and_ignores_order():
    xyz = torch.from_numpy(_cloud(300))
    chosen = farthest_point_sample(xyz, 20)
    assert len(set(chosen.tolist())) == 20
    perm = torch.randperm(300)
    again = perm[farthest_point_sample(xyz[perm], 20)]
    assert set(again.tolist()) == set(chosen.tolist())
    # the first pick is the point farthest from the centroid
    assert int(chosen[0]) == int((xyz - xyz.mean(0)).norm(dim=1).argmax())


def test_processor_centres_scales_and_refuses_bad_clouds(tmp_path):
    proc = PointCloudProcessor(channels=3, num_points=64, min_points=16)
    row = proc(_cloud(64) * 7 + 3)
    assert row.shape == (64, 3)
    torch.testing.assert_close(row.mean(0), torch.zeros(3), atol=1e-6, rtol=0)
    assert row.norm(dim=1).max().item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(InputError, match=r"^point cloud: 5 points, the encoder needs at least 16"):
        proc(_cloud(5))
    with pytest.raises(InputError, match=r"expected an \(N, 3\) array .* got shape \(20, 2\)"):
        proc(np.zeros((20, 2)))
    bad = _cloud(30)
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="1 value\\(s\\) are NaN or infinite"):
        proc(bad)
    path = tmp_path / "cloud.xyz"
    np.savetxt(path, _cloud(30))
    torch.testing.assert_close(proc(path), proc(np.loadtxt(path).astype(np.float32)), atol=0, rtol=0)
    with pytest.raises(OSError, match="missing.npy: cannot read the point cloud"):
        proc(tmp_path / "missing.npy")
    features = PointCloudProcessor(channels=4, num_points=32)(np.c_[_cloud(32), np.full(32, 9.0)])
    assert torch.all(features[:, 3] == 9.0)  # features are not normalised


def test_engine_skips_and_counts_bad_clouds_strict_embed_names_them(model):
    result = embed(model, "points", [_cloud(50), _cloud(3), np.zeros((10, 2)), _cloud(60, 3)])
    assert result.ids == ["0", "3"] and result.vectors.shape == (2, 64)
    assert result.skips.counts == {"invalid_input": 2}
    with pytest.raises(InputError, match="3 points, the encoder needs at least 16"):
        model.embed("points", [_cloud(50), _cloud(3)])


def test_points_tower_round_trips_through_tether_format(model, tmp_path):
    clouds = [_cloud(200, 5), _cloud(30, 6)]
    before = model.embed("points", clouds)
    loaded = tether.load(tether.save(model, tmp_path / "m"))
    assert loaded.modalities == ("image", "text", "points")
    assert loaded.config.towers["points"].widths == (32, 64, 128)
    assert torch.equal(loaded.embed("points", clouds), before)


def test_image_to_points_follows_intensity_and_augments():
    image = np.zeros((28, 28), np.uint8)
    image[5:10, 20:25] = 255  # one bright square top right
    pts = image_to_points(image, 200, np.random.default_rng(0))
    assert pts.shape == (200, 3)
    # every point inside the square: x in [20/28, 25/28] * 2 - 1, y in 1 - [5/28, 10/28] * 2
    assert (pts[:, 0] >= 20 / 28 * 2 - 1).all() and (pts[:, 0] <= 25 / 28 * 2 - 1).all()
    assert (pts[:, 1] <= 1 - 5 / 28 * 2).all() and (pts[:, 1] >= 1 - 10 / 28 * 2).all()
    again = image_to_points(image, 200, np.random.default_rng(0))
    assert np.array_equal(pts, again)
    moved = image_to_points(image, 200, np.random.default_rng(0), rotate_degrees=90, scale_range=(0.5, 0.6))
    assert not np.allclose(moved, pts)
    with pytest.raises(InputError, match="non-blank grey image"):
        image_to_points(np.zeros((28, 28)), 10, np.random.default_rng(0))


def test_fashion_mnist_points_source_pairs_images_and_clouds(fashion_mnist):
    import random

    from tether.data import build_source
    src = build_source({"type": "fashion_mnist_points", "split": "test", "limit": 20, "num_points": 64})
    fixed = src.sample(3, random.Random(1)).extra["points"]
    assert np.array_equal(fixed, src.sample(3, random.Random(2)).extra["points"])  # no augment: one cloud per image
    aug = build_source({"type": "fashion_mnist_points", "split": "test", "limit": 20, "num_points": 64,
                        "augment": True})
    s1, s2 = aug.sample(3, random.Random(1)), aug.sample(3, random.Random(2))
    assert s1.key == src.sample(3).key and s1.label == src.sample(3).label
    assert not np.array_equal(s1.extra["points"], s2.extra["points"])
    assert normalize_points(torch.from_numpy(fixed)).shape == (64, 3)
