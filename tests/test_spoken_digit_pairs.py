"""Spoken digits paired with handwritten digit images (the binding data of the spoken-digit
benchmark), the cached synthesis's manifest, and the audio processor's trim and loudness options."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import soundfile
import torch

import tether

from tether.data.digits import digits_arrays
from tether.data.modality_pairs import ModalityPairDataset
from tether.data.spec import build_source
from tether.data.spoken_digit_pairs import SpokenDigitImageSource, spoken_digit_image_source
from tether.data.spoken_digits import read_spoken_digit_manifest
from tether.errors import ConfigError, DataError
from tether.models.audio_modality import AudioProcessor, AudioProcessorConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _word(label: int, rate: int = 22050) -> np.ndarray:
    """A 'spoken digit': a tone whose pitch says the digit, inside leading and trailing silence."""
    t = np.arange(int(0.3 * rate)) / rate
    tone = 0.4 * np.sin(2 * np.pi * (200 + 100 * label) * t)
    return np.concatenate([np.zeros(rate // 10), tone, np.zeros(rate // 5)]).astype(np.float32)


@pytest.fixture
def cache(tmp_path):
    """A folder as espeak_digits leaves it: WAVs and a manifest, two languages x digits 0-9."""
    rows = ["audio,label,language,speaker"]
    for language in ("de", "ja"):
        (tmp_path / language).mkdir()
        for d in range(10):
            soundfile.write(tmp_path / language / f"{d}_m1_s150_p50.wav", _word(d), 22050)
            rows.append(f"{language}/{d}_m1_s150_p50.wav,{d},{language},{language}+m1 s150 p50")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_the_manifest_is_read_back_and_a_bad_row_is_named(cache, tmp_path_factory):
    items = read_spoken_digit_manifest(cache)
    assert len(items) == 20 and items[0].path == cache / "de" / "0_m1_s150_p50.wav" and items[0].path.is_file()
    assert [d.label for d in items[:10]] == list(range(10)) and items[-1].speaker == "ja+m1 s150 p50"
    (cache / "manifest.csv").write_text("audio,label,language,speaker\nde/x.wav,seven,de,m1\n")
    with pytest.raises(DataError, match=r"manifest.csv, row 2: expected audio, label"):
        read_spoken_digit_manifest(cache)
    with pytest.raises(DataError, match="no manifest"):
        read_spoken_digit_manifest(tmp_path_factory.mktemp("empty"))


def test_each_recording_is_paired_with_an_image_of_its_own_digit(cache):
    source = spoken_digit_image_source(cache, languages=["de"])
    images, labels = digits_arrays("train")
    assert len(source) == 10 and source.class_names == [str(i) for i in range(10)]
    for i in range(10):
        plain = source.sample(i)
        assert plain.label == i and plain.caption == f"the number {i}." and plain.extra["language"] == "de"
        assert plain.extra["audio"] == str(cache / "de" / f"{i}_m1_s150_p50.wav")  # no augmentation: the file
        for rng in (None, random.Random(i), random.Random(100 + i)):
            row = np.asarray(source.sample(i, rng).image)
            assert any(np.array_equal(row, images[j]) for j in np.flatnonzero(labels == i))
    assert np.array_equal(np.asarray(source.sample(3).image), np.asarray(source.sample(3).image))  # fixed without rng
    drawn = {np.asarray(source.sample(3, random.Random(k)).image).tobytes() for k in range(20)}
    assert len(drawn) > 5  # a fresh image of the digit per epoch
    assert len(spoken_digit_image_source(cache, exclude_languages=["de"])) == 10


def test_augmented_recordings_are_waveforms_drawn_from_the_pipeline_rng(cache):
    source = build_source({"type": "spoken_digit_images", "path": str(cache), "augment": {"p_noise": 1.0,
                           "snr_db": [20, 20]}, "sample_rate": 8000, "preload": True})
    assert isinstance(source, SpokenDigitImageSource) and source.augment.snr_db == (20, 20)
    assert len(source._waves) == 20 and all(rate == 8000 for _, rate in source._waves.values())  # preloaded
    a, b = source.sample(4, random.Random(9)), source.sample(4, random.Random(9))
    wave, rate = a.extra["audio"]
    assert rate == 8000 and wave.ndim == 2 and wave.shape[0] == 1 and torch.equal(wave, b.extra["audio"][0])
    other = source.sample(4, random.Random(10)).extra["audio"][0]
    assert other.shape != wave.shape or not torch.equal(other, wave)
    assert source.sample(4).extra["audio"].endswith(".wav")  # without the pipeline's rng: the file, as is
    with pytest.raises(ConfigError, match="augment"):
        build_source({"type": "spoken_digit_images", "path": str(cache), "augment": {"loudness": 3}})


PROCESSOR = dict(sample_rate=8000, num_mel_bins=32, target_length=96, clip_duration=1.0, clips=1)


def test_trim_and_loudness_place_every_word_alike_whatever_its_silence_and_level():
    processor = AudioProcessor(AudioProcessorConfig(**PROCESSOR, trim_db=40.0, loudness_dbfs=-20.0))
    word = _word(7, 8000)[800:3200]
    quiet_late = np.concatenate([np.zeros(4000), 0.05 * word, np.zeros(800)]).astype(np.float32)
    a, b = processor((word, 8000)), processor((quiet_late, 8000))
    assert a.shape == (1, 1, 32, 96) and torch.allclose(a, b, atol=1e-4)  # same clip: silence and gain undone
    plain = AudioProcessor(AudioProcessorConfig(**PROCESSOR))
    assert not torch.allclose(plain((word, 8000)), plain((quiet_late, 8000)), atol=1e-2)  # without them: not
    with pytest.raises(ConfigError, match="trim_db"):
        AudioProcessorConfig.for_tower(type("Cfg", (), {"processor": {"trim_db": 0}, "input_size": (32, 96)})())


def test_pairs_batch_through_the_audio_and_image_processors(cache, tiny_model):
    source = spoken_digit_image_source(cache, augment=True, sample_rate=8000)
    audio = AudioProcessor(AudioProcessorConfig(**PROCESSOR, trim_db=40.0, loudness_dbfs=-20.0))
    data = ModalityPairDataset(source, {"audio": audio, "image": tiny_model.processors["image"]},
                               ["audio", "image"], batch_size=8, num_workers=0)
    batch = next(iter(data))
    assert batch["audio"].shape == (8, 1, 1, 32, 96) and batch["image"].shape[0] == 8
    assert torch.isfinite(batch["audio"]).all() and batch["labels"].tolist() == [int(k.split("/")[1][0])
                                                                                 for k in batch["keys"]]


def test_tether_bind_trains_an_audio_cnn_on_the_pairs_and_keeps_the_anchor(cache, tiny_checkpoint, tmp_path, capsys):
    from tether.cli.main import main
    tower = {"kind": "cnn", "input_size": [32, 96], "width": 16, "layers": 2,
             "processor": {**PROCESSOR, "trim_db": 40.0, "loudness_dbfs": -20.0}}
    data = {"type": "spoken_digit_images", "path": str(cache), "augment": True, "sample_rate": 8000, "preload": True}
    val = {"type": "spoken_digit_images", "path": str(cache), "languages": ["ja"]}
    rc = main(["bind", "--model", str(tiny_checkpoint), "--modality", "audio", "--tower", json.dumps(tower),
               "--data", json.dumps(data), "--val-data", json.dumps(val), "--out", str(tmp_path / "bind"),
               "--steps", "3", "--batch-size", "8", "--no-progress", "--set", "workers=0",
               "--set", "tensorboard=false", "--set", "device=cpu"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    final = json.loads(out.out[out.out.index("{"):])
    assert final["step"] == 3 and final["val_samples"] == 10.0 and "zeroshot_acc1" in final
    assert "audio_to_image_recall@1" in final
    bound = tether.load(tmp_path / "bind" / "model")
    assert bound.modalities == ("image", "text", "audio") and bound.config.towers["audio"].kind == "cnn"
    before = tether.load(tiny_checkpoint).state_dict()
    after = bound.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # the anchor and text tower, bit for bit
