"""tether.audio against torchaudio 2.9: resampling and Kaldi filterbanks equal within 1e-4.

The fixtures (tests/fixtures/torchaudio/, written once by bench/torchaudio_fixtures.py in a
peer venv) hold torchaudio's outputs for real Tux Paint recordings (8 k to 48 kHz, mono and
stereo) and synthetic signals of odd lengths. 1e-4 is the bound the issue sets: both sides run
the same float32 operations in the same order, so only a different BLAS/FFT build could make
them differ, by rounding (identical on the machine that wrote the fixtures).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tether.audio import fbank, load_audio, resample
from tether.errors import AudioDecodeError, InputError

pytestmark = pytest.mark.usefixtures("one_thread")
FIXTURES = Path(__file__).parent / "fixtures" / "torchaudio" / "torchaudio_2.9.npz"
ATOL = 1e-4


@pytest.fixture(scope="module")
def ref() -> dict:
    with np.load(FIXTURES) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["meta"] = json.loads(bytes(arrays["meta"]))
    return arrays


def _recording(ref: dict, stamps: Path, name: str) -> tuple[torch.Tensor, int]:
    info = ref["meta"]["recordings"][name]
    wave, rate = load_audio(stamps / info["file"])
    stop = None if info["count"] is None else info["start"] + info["count"]
    return wave[:, info["start"]:stop], rate


def test_load_audio_decodes_tux_paint_recordings_as_channels_by_samples(ref, tuxpaint_stamps):
    for name, info in ref["meta"]["recordings"].items():
        wave, rate = _recording(ref, tuxpaint_stamps, name)
        assert rate == info["sample_rate"] and wave.dtype == torch.float32
        expected = ref[f"recording/{name}"]
        assert wave.shape[0] == expected.shape[0]  # channels first: 2 for the stereo recordings
        np.testing.assert_allclose(wave[:, :expected.shape[1]].numpy(), expected, atol=1e-6, rtol=0)


def test_resample_equals_torchaudio_on_real_recordings(ref, tuxpaint_stamps):
    for name in ref["meta"]["recordings"]:
        wave, rate = _recording(ref, tuxpaint_stamps, name)
        out = resample(wave, rate, 16000)
        expected = ref[f"resample/{name}/output"]
        assert out.shape == expected.shape, name
        np.testing.assert_allclose(out.numpy(), expected, atol=ATOL, rtol=0, err_msg=name)


def test_resample_equals_torchaudio_on_synthetic_signals_and_options(ref):
    synthetic = [n for n in ref["meta"]["resample"] if n.startswith("synth")]
    assert len(synthetic) == 4
    for name in synthetic:
        case = ref["meta"]["resample"][name]
        out = resample(torch.from_numpy(ref[f"resample/{name}/input"]), case["orig_freq"], case["new_freq"],
                       **case["options"])
        expected = ref[f"resample/{name}/output"]
        assert out.shape == expected.shape, name  # odd lengths: ceil(n * new / orig) samples
        np.testing.assert_allclose(out.numpy(), expected, atol=ATOL, rtol=0, err_msg=name)


def test_fbank_equals_torchaudio_kaldi_fbank(ref):
    cases = ref["meta"]["fbank"]
    assert len(cases) >= 25 and {c.split("/")[1] for c in cases} >= {"imagebind", "energy_first", "rect_no_snip"}
    for key, case in cases.items():
        name = case["input"]
        wave = ref.get(f"fbank_input/{name}")
        if wave is None:
            wave = ref[f"resample/{name}/output"]
        opts = dict(case["options"])
        bins = opts.pop("num_mel_bins")
        frame_length, frame_shift = opts.pop("frame_length", 25.0), opts.pop("frame_shift", 10.0)
        out = fbank(torch.from_numpy(wave[:1]), case["sample_rate"], bins, frame_length, frame_shift, **opts)
        expected = ref[f"fbank/{key}"]
        assert out.shape == expected.shape, key
        np.testing.assert_allclose(out.numpy(), expected, atol=ATOL, rtol=0, err_msg=key)


def test_fbank_defaults_are_kaldis_with_128_bins():
    wave = torch.sin(torch.arange(16000.0) * 0.05).unsqueeze(0)
    out = fbank(wave, 16000)
    assert out.shape == (98, 128)  # 1 + (16000 - 400) // 160 frames of 25 ms every 10 ms
    assert torch.isfinite(out).all()


def test_bad_audio_is_a_one_line_error_naming_the_file(tmp_path):
    missing = tmp_path / "gone.ogg"
    with pytest.raises(AudioDecodeError, match="gone.ogg.*file not found") as err:
        load_audio(missing)
    assert err.value.skip_reason == "missing_audio"
    broken = tmp_path / "broken.ogg"
    broken.write_bytes(b"OggS" + b"\0" * 60)
    with pytest.raises(AudioDecodeError, match="broken.ogg") as err:
        load_audio(broken)
    assert err.value.skip_reason == "corrupt_audio" and "\n" not in str(err.value)
    with pytest.raises(InputError, match="positive integers"):
        resample(torch.zeros(1, 100), 0, 16000)
    with pytest.raises(InputError, match="cannot hold one 25.0 ms window"):
        fbank(torch.zeros(1, 100), 16000)
