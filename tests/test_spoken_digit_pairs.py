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


def test_a_corrupt_recording_is_skipped_when_drawn_not_fatal_when_preloaded(cache):
    from tether.data.sample import SkipSample
    (cache / "de" / "3_m1_s150_p50.wav").write_bytes(b"RIFF not really a wave")
    source = build_source({"type": "spoken_digit_images", "path": str(cache), "augment": True, "preload": True})
    assert len(source._waves) == 19  # the other recordings are decoded
    with pytest.raises(SkipSample) as caught:
        source.sample(3, random.Random(0))
    assert caught.value.key == "de/3_m1_s150_p50.wav"
    assert source.sample(4, random.Random(0)).label == 4


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


def test_mean_norm_removes_a_fixed_colouring_of_the_recording():
    from tether.audio_augment import random_eq
    rng = np.random.default_rng(0)
    noise_word = (0.3 * rng.standard_normal(6000)).astype(np.float32)  # broadband: every mel bin has energy
    coloured = random_eq(torch.from_numpy(noise_word)[None], 8000, torch.Generator().manual_seed(3), max_db=12.0)
    coloured = coloured[0].numpy()
    normed = AudioProcessor(AudioProcessorConfig(**PROCESSOR, mean_norm=True, mean=0.0, std=1.0))
    plain = AudioProcessor(AudioProcessorConfig(**PROCESSOR, mean=0.0, std=1.0))
    frames = slice(2, 70)  # the 6000-sample recording's 73 frames, away from its edges
    a, b = normed((noise_word, 8000))[0, 0, :, frames], normed((coloured, 8000))[0, 0, :, frames]
    c, d = plain((noise_word, 8000))[0, 0, :, frames], plain((coloured, 8000))[0, 0, :, frames]
    offset = (c - d).mean(dim=1).abs().max()  # the colouring: up to 12 dB = 2.8 in natural-log mel
    assert offset > 1.0 and (a - b).mean(dim=1).abs().max() < 0.1 * offset
    assert torch.allclose(normed((noise_word, 8000))[0, 0, :, :73].mean(dim=1), torch.zeros(32), atol=1e-4)


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


@pytest.fixture
def asterisk_sounds(tmp_path):
    """A folder laid out as Debian's Asterisk sound packages lay it out: a WAV voice, a raw-GSM voice
    reached twice (through a link, as sounds/digits/fr links to fr/digits), numbers above 9 and other
    prompts beside the digits, and a gendered variant (1F)."""
    root = tmp_path / "sounds"
    for voice, suffix in (("en_US_f_Allison", "wav"), ("fr", "gsm")):
        (root / voice / "digits").mkdir(parents=True)
        for name in [str(d) for d in range(10)] + ["10", "oclock"] + (["1F"] if suffix == "wav" else []):
            label = int(name[0]) if name[0].isdigit() else 0
            path = root / voice / "digits" / f"{name}.{suffix}"
            if suffix == "wav":
                soundfile.write(path, _word(label, 8000), 8000)
            else:
                soundfile.write(path, _word(label, 8000), 8000, format="RAW", subtype="GSM610")
    (root / "digits").mkdir()
    (root / "digits" / "fr").symlink_to(root / "fr" / "digits")
    return root


def test_asterisk_recordings_of_the_digits_are_found_by_voice_and_gsm_decodes(asterisk_sounds, tmp_path):
    from tether.audio import load_audio
    from tether.data.spoken_digits import asterisk_spoken_digits

    items = asterisk_spoken_digits(asterisk_sounds)
    by_speaker = {}
    for d in items:
        by_speaker.setdefault(d.speaker, []).append(d)
    assert sorted(by_speaker) == ["asterisk:en_US_f_Allison", "asterisk:fr"]  # the linked folder counts once
    assert sorted(d.label for d in by_speaker["asterisk:en_US_f_Allison"]) == [0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert {d.language for d in by_speaker["asterisk:fr"]} == {"fr"} and len(by_speaker["asterisk:fr"]) == 10
    assert [d.language for d in asterisk_spoken_digits(asterisk_sounds, languages=["en"])] == ["en"] * 11
    wave, rate = load_audio(asterisk_sounds / "fr" / "digits" / "7.gsm")  # raw GSM 6.10: no header
    tone = _word(7, 8000)
    assert rate == 8000 and wave.shape == (1, len(tone))
    spectrum = np.abs(np.fft.rfft(wave[0].numpy()))
    assert abs(np.argmax(spectrum) * 8000 / len(tone) - 900) < 15  # the 900 Hz tone survives the codec
    with pytest.raises(DataError, match="no Asterisk digits"):
        asterisk_spoken_digits(tmp_path / "nowhere")


def test_a_list_of_recording_sets_is_mixed_with_repeats(cache, asterisk_sounds, monkeypatch):
    from tether.data import spoken_digits
    monkeypatch.setitem(spoken_digits.RECORDING_SETS, "asterisk",
                        lambda: spoken_digits.asterisk_spoken_digits(asterisk_sounds))
    source = build_source({"type": "spoken_digit_images", "path": [str(cache), {"path": "asterisk", "repeat": 3}]})
    speakers = [s.extra["speaker"] for s in (source.sample(i) for i in range(len(source)))]
    assert len(source) == 20 + 3 * 21 and speakers.count("asterisk:fr") == 30
    assert sum(s.startswith("asterisk:en_US") for s in speakers) == 33
    preloaded = build_source({"type": "spoken_digit_images", "path": [{"path": "asterisk", "repeat": 3}],
                              "preload": True})
    assert len(preloaded) == 63 and len(preloaded._waves) == 21  # each file decoded once, whatever its repeats
    with pytest.raises(ConfigError, match="repeat"):
        build_source({"type": "spoken_digit_images", "path": [{"path": "asterisk", "repeat": 0}]})
