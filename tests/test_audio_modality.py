"""The "audio" modality end to end: ImageBind's preprocessing, the strict API's errors, the
embedding engine's skip accounting, save/load, and `tether embed --audio DIR`.

ImageBind's reference clips were written by its own ``load_and_transform_audio_data`` (run from an
ImageBind checkout by bench/torchaudio_fixtures.py, beside torchaudio 2.9) on real Tux Paint recordings.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import tether
from tether.cli.main import main
from tether.curate import read_embeddings, read_metadata
from tether.embedding import embed
from tether.errors import AudioDecodeError, ConfigError
from tether.models.audio_modality import AudioProcessor, AudioProcessorConfig

pytestmark = pytest.mark.usefixtures("one_thread")
FIXTURES = Path(__file__).parent / "fixtures" / "torchaudio" / "torchaudio_2.9.npz"
ATOL = 1e-4


@pytest.fixture(scope="module")
def imagebind_ref() -> dict:
    with np.load(FIXTURES) as z:
        meta = json.loads(bytes(z["meta"]))
        return {name: (info, z[f"imagebind/{name}"]) for name, info in meta["imagebind"].items()}


def test_processor_equals_imagebinds_preprocessing_on_tux_paint_recordings(imagebind_ref, tuxpaint_stamps):
    processor = AudioProcessor()
    for name, (info, expected) in imagebind_ref.items():
        path = tuxpaint_stamps / info["file"]
        clips = processor(path)
        assert clips.shape == (3, 1, 128, 204) == expected.shape, name
        np.testing.assert_allclose(clips.numpy(), expected, atol=ATOL, rtol=0, err_msg=name)


def test_clips_follow_imagebinds_timing():
    processor = AudioProcessor()
    assert processor.clip_bounds(16000) == [(0, 32000)] * 3  # shorter than a clip: three times the start
    # 2.21875 s: starts at 0, 1/3 and 2/3 of the latest start (0.21875 s), in samples rounded down
    assert processor.clip_bounds(35500) == [(0, 32000), (1166, 33166), (2333, 34333)]
    clips = processor((np.sin(np.arange(8000) * 0.3) * 0.5, 16000))  # 0.5 s: 48 frames, then zeros
    padded = (0 - processor.config.mean) / processor.config.std
    assert torch.allclose(clips[0, 0, :, 48:], torch.full((128, 156), padded))
    assert not torch.allclose(clips[0, 0, :, 47], torch.full((128,), padded))
    wave = torch.from_numpy(np.sin(np.arange(8000) * 0.3) * 0.5).requires_grad_()  # a tensor, even with grad
    torch.testing.assert_close(processor((wave, 16000.0)), clips, atol=1e-6, rtol=0)
    assert wave.grad is None and wave.dtype == torch.float64  # the caller's tensor is left as it was


def _write_bad_files(folder: Path) -> dict[str, str]:
    """One file per way an audio input can be unusable -> the reason jobs count it as."""
    folder.mkdir(parents=True, exist_ok=True)
    tone = (0.5 * np.sin(np.arange(8000) * 0.2)).astype(np.float32)
    soundfile.write(folder / "tone.wav", tone, 8000)
    soundfile.write(folder / "silent.wav", np.zeros(8000, np.float32), 8000)
    soundfile.write(folder / "empty.wav", np.zeros(0, np.float32), 8000)
    nan = tone.copy()
    nan[100] = np.nan
    soundfile.write(folder / "nan.wav", nan, 8000, subtype="FLOAT")
    (folder / "corrupt.ogg").write_bytes(b"OggS" + bytes(200))
    header = bytearray((folder / "tone.wav").read_bytes())
    at = header.find(b"fmt ")
    header[at + 12:at + 16] = bytes(4)  # sample rate 0
    (folder / "rate0.wav").write_bytes(bytes(header))
    return {"silent.wav": "silent_audio", "empty.wav": "empty_audio", "nan.wav": "invalid_audio",
            "corrupt.ogg": "corrupt_audio", "rate0.wav": "invalid_audio"}


@pytest.fixture(scope="module")
def audio_model():
    torch.manual_seed(0)
    return tether.create_model("tiny-audio-28").eval()


def test_strict_api_raises_one_line_errors_naming_the_file(audio_model, tmp_path):
    reasons = _write_bad_files(tmp_path)
    for name, reason in reasons.items():
        with pytest.raises(AudioDecodeError) as err:
            audio_model.embed("audio", [tmp_path / "tone.wav", tmp_path / name])
        assert name in str(err.value) and "\n" not in str(err.value), str(err.value)
        assert err.value.skip_reason == reason, name
    with pytest.raises(AudioDecodeError, match="sample rate 0"):
        audio_model.embed("audio", [tmp_path / "rate0.wav"])
    with pytest.raises(AudioDecodeError, match="<waveform>.*sample rate 0"):
        audio_model.embed("audio", [(np.ones(100), 0)])


def test_jobs_skip_and_count_each_bad_file_by_reason(audio_model, tmp_path):
    reasons = _write_bad_files(tmp_path)
    paths = [tmp_path / "tone.wav", *[tmp_path / n for n in reasons]]
    result = embed(audio_model, "audio", paths, batch_size=3)
    assert result.ids == [str(tmp_path / "tone.wav")]
    expected = {"silent_audio": 1, "empty_audio": 1, "invalid_audio": 2, "corrupt_audio": 1}
    assert dict(result.skips.counts) == expected
    strict = audio_model.embed("audio", [tmp_path / "tone.wav"])
    torch.testing.assert_close(result.vectors, strict, atol=1e-6, rtol=0)


def test_embeddings_average_the_clips_and_are_unit_vectors(audio_model, tuxpaint_stamps):
    path = tuxpaint_stamps / "household" / "toilet.ogg"  # 2.2 s: three different clips
    vec = audio_model.embed("audio", [path])
    clips = audio_model.processors["audio"](path)
    with torch.no_grad():
        each = torch.nn.functional.normalize(audio_model.encode("audio", clips), dim=-1)
    torch.testing.assert_close(vec[0], torch.nn.functional.normalize(each.mean(0), dim=0), atol=1e-5, rtol=0)
    assert (each[0] - each[2]).norm() > 1e-3  # the clips differ, so the average is not one of them


def test_save_load_round_trip_keeps_tower_processor_and_embeddings(audio_model, tmp_path, tuxpaint_stamps):
    files = sorted((tuxpaint_stamps / "symbols" / "math").glob("[0-3]_en_GB.ogg"))
    before = audio_model.embed("audio", files)
    tether.save(audio_model, tmp_path / "m")
    loaded = tether.load(tmp_path / "m").eval()
    assert loaded.config.towers["audio"] == audio_model.config.towers["audio"]
    assert loaded.processors["audio"].config == audio_model.processors["audio"].config
    torch.testing.assert_close(loaded.embed("audio", files), before, atol=1e-6, rtol=0)


def test_a_processor_that_does_not_fit_the_tower_is_refused(tmp_path):
    model = tether.create_model("tiny-audio-28")
    model.processors["audio"] = AudioProcessor(AudioProcessorConfig(num_mel_bins=64))
    soundfile.write(tmp_path / "tone.wav", (0.5 * np.sin(np.arange(8000) * 0.2)).astype(np.float32), 8000)
    with pytest.raises(ConfigError, match="64 x 204 clips.*128 x 204"):  # before any file is read
        model.embed("audio", [tmp_path / "tone.wav"])
    with pytest.raises(ConfigError, match="unknown key 'mel_bins'"):
        AudioProcessorConfig.for_tower(tether.models.audio_modality.AudioTowerConfig(processor={"mel_bins": 64}))


def test_tether_embed_audio_dir_writes_audio_emb_parts_and_counts_skips(audio_model, tmp_path, tuxpaint_stamps):
    ckpt = tether.save(audio_model, tmp_path / "m")
    folder = tmp_path / "sounds"
    _write_bad_files(folder)
    (folder / "notes.txt").write_text("not audio")  # not an audio file name: not an input
    for f in sorted((tuxpaint_stamps / "symbols" / "math").glob("[5-7]_en_GB.ogg")):
        (folder / "digits").mkdir(exist_ok=True)
        (folder / "digits" / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "emb"
    args = ["embed", "--model", str(ckpt), "--audio", str(folder), "--out", str(out), "--quiet", "--part-size", "3"]
    assert main(args) == 0
    vectors = read_embeddings(out, "audio")
    keys = read_metadata(out).column("key").to_pylist()
    assert keys == ["digits/5_en_GB.ogg", "digits/6_en_GB.ogg", "digits/7_en_GB.ogg", "tone.wav"]
    assert sorted(p.name for p in (out / "audio_emb").iterdir())[0] == "audio_emb_0000.npy"
    paths = read_metadata(out).column("audio").to_pylist()
    expected = audio_model.embed("audio", paths)
    np.testing.assert_allclose(vectors, expected.numpy(), atol=1e-3, rtol=0)  # stored as float16
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["skipped"] == 5
    assert {s["reason"] for s in summary["skipped"]} == {"silent_audio", "empty_audio", "invalid_audio",
                                                          "corrupt_audio"}
    before = {p.name: p.stat().st_mtime_ns for p in (out / "audio_emb").iterdir()}
    assert main(args) == 0  # a rerun resumes: every part is finished, nothing is rewritten
    assert {p.name: p.stat().st_mtime_ns for p in (out / "audio_emb").iterdir()} == before
