"""Ensemble towers: several runs' towers of one modality held as one tower of one checkpoint."""
from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tether
from tether.cli.main import main
from tether.curate import read_embeddings
from tether.data.spoken_digits import tuxpaint_spoken_digits
from tether.errors import ConfigError
from tether.models.aligned import AlignedModel
from tether.models.ensemble import EnsembleTower, ensemble

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(model, seed: int):
    """``model`` with its audio tower and projection redrawn: another run bound to the same anchor."""
    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*other.towers["audio"].parameters(), *other.projections["audio"].parameters()]:
            p.copy_(p + 0.05 * torch.randn(p.shape, generator=generator))
    return other


@pytest.fixture(scope="module")
def runs():
    torch.manual_seed(0)
    base = tether.create_model("tiny-audio-28").eval()
    return [base, _run(base, 1), _run(base, 2)]


@pytest.fixture(scope="module")
def recordings(tuxpaint_stamps):
    return [str(d.path) for d in tuxpaint_spoken_digits(tuxpaint_stamps, languages=["de"])[:4]]


def test_an_ensemble_embeds_the_mean_of_its_members_unit_embeddings(runs, recordings):
    model = ensemble(runs, "audio").eval()
    assert isinstance(model.towers["audio"], EnsembleTower) and model.config.towers["audio"].kind == "ensemble"
    members = [F.normalize(torch.as_tensor(m.embed("audio", recordings)), dim=-1) for m in runs]
    expected = F.normalize(sum(members), dim=-1)
    got = torch.as_tensor(model.embed("audio", recordings))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)  # float32 rounding of a few sums
    assert not any(torch.allclose(got, m, atol=1e-3) for m in members)  # not just one member
    tokens = torch.randint(0, 100, (2, 16))
    assert torch.equal(model.encode("text", tokens), runs[0].encode("text", tokens))  # other towers kept


def test_an_ensemble_round_trips_through_save_load_and_tether_embed(runs, recordings, tuxpaint_stamps, tmp_path):
    model = ensemble(runs[:2], "audio").eval()
    path = tether.save(model, tmp_path / "ensemble")
    config = json.loads((path / "config.json").read_text())
    loaded = tether.load(path)
    assert len(loaded.towers["audio"].members) == 2
    before, after = (torch.as_tensor(m.embed("audio", recordings)) for m in (model, loaded))
    assert torch.equal(before, after)
    assert "ensemble" in json.dumps(config)
    out = tmp_path / "emb"
    assert main(["embed", "--model", str(path), "--data", f"tuxpaint_digits:{tuxpaint_stamps}", "--modalities",
                 "audio", "--out", str(out), "--quiet"]) == 0
    vectors = read_embeddings(out, "audio")
    assert vectors.shape[0] == len(tuxpaint_spoken_digits(tuxpaint_stamps))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)


def test_an_ensemble_of_an_ensemble_flattens_its_members(runs, recordings, tmp_path):
    saved = tether.load(tether.save(ensemble(runs[:2], "audio"), tmp_path / "pair"))  # members read back from JSON
    nested = ensemble([saved, runs[2]], "audio").eval()
    flat = ensemble(runs, "audio").eval()
    assert len(nested.towers["audio"].members) == 3
    torch.testing.assert_close(torch.as_tensor(nested.embed("audio", recordings)),
                               torch.as_tensor(flat.embed("audio", recordings)), atol=1e-6, rtol=0)


def test_ensemble_refuses_models_that_do_not_share_the_rest(runs):
    with pytest.raises(ValueError, match="two or more models"):
        ensemble(runs[:1], "audio")
    torch.manual_seed(5)
    stranger = tether.create_model("tiny-audio-28")  # another anchor: its image and text towers differ
    with pytest.raises(ValueError, match=r"model 1's 'towers\.\w+.*' differs from model 0's"):
        ensemble([runs[0], stranger], "audio")
    with pytest.raises(ValueError, match="model 0 has no 'points' tower; its towers: image, text, audio"):
        ensemble(runs[:2], "points")
    config = copy.deepcopy(runs[0].config)
    config.towers["audio"] = dataclasses.replace(config.towers["audio"], kind="ensemble", options={"members": []})
    with pytest.raises(ConfigError, match="towers.audio: kind 'ensemble' needs options.members, a list of two"):
        AlignedModel(config)
    other_processor = _run(runs[0], 3)
    other_processor.config = copy.deepcopy(other_processor.config)
    other_processor.config.towers["audio"].processor = {"clips": 1}
    with pytest.raises(ValueError, match="processor differs"):
        ensemble([runs[0], other_processor], "audio")


def test_tether_ensemble_writes_one_checkpoint_and_refuses_strangers(runs, recordings, tmp_path, capsys):
    paths = [str(tether.save(m, tmp_path / f"run{i}")) for i, m in enumerate(runs)]
    out = tmp_path / "ensemble"
    assert main(["ensemble", *paths, "--modality", "audio", "--out", str(out)]) == 0
    assert "3 audio towers" in capsys.readouterr().out
    expected = torch.as_tensor(ensemble(runs, "audio").eval().embed("audio", recordings))
    torch.testing.assert_close(torch.as_tensor(tether.load(out).embed("audio", recordings)), expected,
                               atol=1e-6, rtol=0)
    torch.manual_seed(7)
    stranger = str(tether.save(tether.create_model("tiny-audio-28"), tmp_path / "stranger"))
    assert main(["ensemble", paths[0], stranger, "--modality", "audio", "--out", str(tmp_path / "bad")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("tether ensemble: error: ensemble: model 1's") and "\n" not in err
    assert not (tmp_path / "bad").exists()
