"""Depth, thermal and IMU: processors against references, real samples end to end (scikit-image's
Middlebury motorcycle disparity, BasicMotions' smart-watch recordings), refusals in one line,
skip accounting, save/load and `tether embed`. Thermal is synthetic: no thermal data ships offline."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tether
from tether.cli.main import main
from tether.embedding import embed
from tether.errors import InputError
from tether.imu import IMUProcessor
from tether.modalities import tower_preset
from tether.models.extend import add_tower
from tether.single_channel import DepthProcessor, ThermalProcessor

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = tether.create_model("tiny-vit-28")
    for modality in ("depth", "thermal", "imu"):
        add_tower(m, modality, tower_preset(modality, "tiny"))
    return m.eval()


@pytest.fixture(scope="module")
def motorcycle() -> np.ndarray:
    from skimage import data
    _, _, disparity = data.stereo_motorcycle()
    return disparity


@pytest.fixture(scope="module")
def basic_motions():
    from tether.data.basic_motions import read_basic_motions
    return read_basic_motions("test")


def test_depth_to_disparity_equals_imagebinds_recipe_with_scipy():
    """ImageBind's authors: zoom(depth, 224 / shape, order=1), clip to [0.01, 50], 0.075 * 518.858 / depth."""
    from scipy.ndimage import zoom
    depth = np.random.default_rng(0).uniform(0.3, 9.0, (60, 80)).astype(np.float32)
    depth[0, 0] = 70.0  # beyond max_depth: clipped
    ours = DepthProcessor(image_size=40)(depth)
    reference = 0.075 * 518.8579 / np.clip(zoom(depth, (40 / 60, 40 / 80), order=1), 0.01, 50)
    assert ours.shape == (1, 40, 40)
    # torch computes source coordinates in float32: ~60 * 2**-24 px off, times neighbour differences
    # up to 8.7 m, is up to ~3e-5 m on depths >= 0.3 m: 1e-4 relative (scipy works in float64)
    np.testing.assert_allclose(ours[0].numpy(), reference, rtol=2e-4, atol=0)
    assert ours[0, 0, 0].item() == pytest.approx(0.075 * 518.8579 / 50, rel=1e-6)  # 70 m clipped to 50


def test_middlebury_motorcycle_disparity_end_to_end(model, motorcycle, tmp_path):
    assert motorcycle.shape == (500, 741) and np.isinf(motorcycle).any()  # occlusions are inf
    proc = DepthProcessor(image_size=64, input="disparity")
    row = proc(motorcycle)
    assert row.shape == (1, 64, 64) and torch.isfinite(row).all() and row.max() <= np.nanmax(motorcycle[np.isfinite(motorcycle)])
    model.config.towers["depth"].processor = {"input": "disparity"}
    model.processors["depth"] = tether.get_modality("depth").build_processor(model.config.towers["depth"], None)
    np.save(tmp_path / "motorcycle.npy", motorcycle)
    vectors = model.embed("depth", [motorcycle, tmp_path / "motorcycle.npy"])
    assert vectors.shape == (2, 64) and torch.equal(vectors[0], vectors[1])
    loaded = tether.load(tether.save(model, tmp_path / "m"))
    assert loaded.config.towers["depth"].processor == {"input": "disparity"}
    assert torch.equal(loaded.embed("depth", [motorcycle, tmp_path / "motorcycle.npy"]), vectors)


def test_depth_refusals_and_skips(model):
    with pytest.raises(InputError, match=r"^depth map: no valid pixel"):
        DepthProcessor()(np.full((10, 10), np.inf))
    with pytest.raises(InputError, match=r"expected one channel \(H, W\), got shape \(3, 10, 10\)"):
        DepthProcessor()(np.ones((3, 10, 10)))
    result = embed(model, "depth", [np.ones((20, 30)), np.zeros((20, 30)), np.ones((2, 20, 30))])
    assert result.ids == ["0"] and result.skips.counts == {"invalid_input": 2}


def test_thermal_scales_by_bit_depth_and_embeds_synthetic_images(model, tmp_path):
    from PIL import Image
    proc = ThermalProcessor(image_size=16, mean=0.0, std=1.0)
    ramp8 = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (32, 1))
    ramp16 = ramp8.astype(np.uint16) * 257  # the same picture in 16 bits
    torch.testing.assert_close(proc(ramp8), proc(ramp16), atol=1e-6, rtol=0)
    assert 0 <= proc(ramp8).min() and proc(ramp8).max() <= 1
    Image.fromarray(ramp16).save(tmp_path / "t16.png")
    torch.testing.assert_close(proc(tmp_path / "t16.png"), proc(ramp16), atol=1e-6, rtol=0)
    hot = np.zeros((40, 60), np.uint8)
    hot[10:30, 20:40] = 230  # a warm body on a cold background
    vectors = model.embed("thermal", [hot, ramp8])
    assert vectors.shape == (2, 64) and not torch.allclose(vectors[0], vectors[1])
    with pytest.raises(InputError, match="NaN or infinite"):
        model.embed("thermal", [np.full((20, 20), np.nan)])


def test_basic_motions_are_real_six_channel_recordings(basic_motions):
    series, labels = basic_motions
    assert series.shape == (40, 6, 100) and sorted(set(labels)) == ["Badminton", "Running", "Standing", "Walking"]
    assert all(labels.count(a) == 10 for a in set(labels))
    gyro_energy = {a: float(np.mean([series[i, 3:].std() for i in range(40) if labels[i] == a])) for a in set(labels)}
    assert gyro_energy["Standing"] < gyro_energy["Walking"] < gyro_energy["Running"]  # real motion, real order


def test_imu_processor_resamples_and_refuses_wrong_channels_in_one_line(model, basic_motions):
    series, _ = basic_motions
    proc = IMUProcessor(6, 128)
    row = proc(series[0])
    assert row.shape == (6, 128)
    torch.testing.assert_close(row[:, 0], torch.from_numpy(series[0, :, 0]))  # end points kept
    torch.testing.assert_close(row[:, -1], torch.from_numpy(series[0, :, -1]))
    with pytest.raises(InputError) as err:
        model.embed("imu", [series[0][:5]])
    assert str(err.value) == ("IMU series: expected 6 channels x T samples (accelerometer xyz, gyroscope xyz), "
                              "got shape (5, 100)")
    vectors = model.embed("imu", list(series))
    assert vectors.shape == (40, 64)
    result = embed(model, "imu", [series[0], series[0].T, series[1]])
    assert result.ids == ["0", "2"] and result.skips.counts == {"invalid_input": 1}


def test_imagebind_imu_shape_runs(basic_motions):
    cfg = tower_preset("imu", "imagebind")
    cfg.update(width=32, layers=1, heads=2)  # ImageBind's 6 x 2000 geometry, a small width
    m = tether.create_model("tiny-vit-28")
    add_tower(m, "imu", cfg)
    tower = m.towers["imu"]
    assert tower.grid == (250,) and tower.patch_embed.weight.shape == (32, 48)
    assert m.processors["imu"](basic_motions[0][0]).shape == (6, 2000)
    assert m.config.logit_scales["imu"] == 5.0


def test_tether_embed_writes_imu_embeddings_of_basic_motions(model, tmp_path, capsys):
    path = tether.save(model, tmp_path / "m")
    rc = main(["embed", "--model", str(path), "--data", "basic_motions", "--modalities", "imu",
               "--out", str(tmp_path / "emb"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    from tether.curate.layout import read_embeddings
    vectors = read_embeddings(tmp_path / "emb", "imu")
    assert vectors.shape == (40, 64)
    summary = json.loads((tmp_path / "emb" / "summary.json").read_text())
    assert summary["counts"]["rows"] == 40 and summary["counts"]["skipped"] == 0
    import pyarrow.parquet as pq
    meta = pq.read_table(tmp_path / "emb" / "metadata" / "metadata_0000.parquet")
    assert "imu" not in meta.column_names  # the series is the input, not a metadata column
    assert meta.column("activity").to_pylist()[:2] == ["Standing", "Standing"]


@pytest.mark.slow
def test_imu_binds_to_the_text_tower_through_the_trainer(tiny_checkpoint, tmp_path):
    from tether.bind import bind
    before = tether.load(tiny_checkpoint).state_dict()
    final = bind(str(tiny_checkpoint), "imu", "basic_motions", anchor="text", out_dir=str(tmp_path / "run"),
                 steps=8, batch_size=20, lr=3e-3, workers=0, log_every=1, tensorboard=False, device="cpu",
                 val_data={"type": "basic_motions", "split": "test"})
    assert 0 <= final["zeroshot_acc1"] <= 1 and "imu_to_text_recall@1" in final
    bound = tether.load(tmp_path / "run" / "model")
    assert bound.modalities == ("image", "text", "imu") and bound.config.logit_scales == {"imu": 5.0}
    after = bound.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["scale"] for r in log if r["kind"] == "train"] == [5.0] * 8  # ImageBind's fixed IMU temperature


def test_tether_embed_reads_a_folder_of_each_modality_and_counts_bad_files(model, motorcycle, tmp_path, capsys):
    from tether.curate.layout import read_embeddings
    add = tether.load(tether.save(model, tmp_path / "m"))
    add_tower(add, "points", tower_preset("points", "tiny"))
    path = tether.save(add, tmp_path / "m2")
    folders = {"depth": {"moto.npy": motorcycle, "flat.npy": np.ones((30, 40))},
               "imu": {"walk.npy": np.random.default_rng(0).normal(size=(6, 100))},
               "points": {"cloud.npy": np.random.default_rng(1).normal(size=(300, 3))}}
    for modality, files in folders.items():
        folder = tmp_path / f"in_{modality}"
        folder.mkdir()
        for name, array in files.items():
            np.save(folder / name, array)
        (folder / "broken.npy").write_bytes(b"not an array")
        rc = main(["embed", "--model", str(path), f"--{modality}", str(folder), "--out",
                   str(tmp_path / f"emb_{modality}"), "--quiet"])
        assert rc == 0, capsys.readouterr().err
        assert read_embeddings(tmp_path / f"emb_{modality}", modality).shape == (len(files), 64)
        summary = json.loads((tmp_path / f"emb_{modality}" / "summary.json").read_text())
        assert summary["counts"]["skipped"] == 1 and list(summary["skips"]) in (["invalid_input"], ["unreadable_input"])


def test_every_sensor_modality_round_trips_through_tether_format_and_skips_bad_inputs(model, tmp_path):
    rng = np.random.default_rng(0)
    inputs = {"depth": [rng.uniform(0.5, 5, (30, 40)), rng.uniform(1, 3, (64, 64))],
              "thermal": [rng.integers(0, 255, (40, 60), dtype=np.uint8), rng.random((32, 32))],
              "imu": [rng.normal(size=(6, 100)), rng.normal(size=(6, 2000))]}
    bad = {"depth": np.full((8, 8), np.nan), "thermal": np.full((8, 8), np.inf), "imu": rng.normal(size=(3, 100))}
    loaded = tether.load(tether.save(model, tmp_path / "m"))
    for modality, items in inputs.items():
        assert loaded.config.towers[modality] == model.config.towers[modality]
        assert torch.equal(loaded.embed(modality, items), model.embed(modality, items)), modality
        result = embed(loaded, modality, [items[0], bad[modality], items[1]])
        assert result.ids == ["0", "2"] and result.skips.counts == {"invalid_input": 1}, modality
    assert loaded.config.logit_scales == {"depth": 5.0, "thermal": 10.0, "imu": 5.0}


def test_a_pairs_scale_is_the_modalitys_own_parameter_else_its_config_value_else_the_shared_one(model):
    m = tether.create_model("tiny-vit-28")
    shared = m.scale().item()
    assert m.scale("image", "text").item() == shared  # image-text: the shared scale
    add_tower(m, "imu", tower_preset("imu", "tiny"), scale=7.0)  # a parameter of its own, from bind.scale
    assert m.scale("imu", "image").item() == pytest.approx(7.0) and m.scale("image", "imu").item() == pytest.approx(7.0)
    del m.logit_scales["imu"]  # a model loaded from ImageBind's layout: the config's fixed value (IMU: 5)
    assert m.scale("imu", "text").item() == pytest.approx(5.0)
