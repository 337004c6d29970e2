"""Write tests/fixtures/torchaudio/: torchaudio's own resampling and Kaldi filterbanks, and
ImageBind's audio preprocessing, on real Tux Paint recordings and synthetic signals.

tether's pure-torch versions (tether.audio, the audio processor) are compared with these
within 1e-4 (tests/test_audio.py). Run once, in a peer venv (torchaudio does not install beside
tether's torch):

    python -m venv bench/.venv-torchaudio
    bench/.venv-torchaudio/bin/pip install torch==2.9.1
    bench/.venv-torchaudio/bin/pip install "torchaudio==2.9.*" soundfile numpy
    bench/.venv-torchaudio/bin/python bench/torchaudio_fixtures.py

Recordings are decoded with soundfile (torchaudio 2.9's own loader needs torchcodec); each
case stores its input excerpt, so the tests check tether's decoding as well. ImageBind is not
installed (its package pins old torch/torchvision and pulls pytorchvideo); its
``waveform2melspec`` and the clip timing of pytorchvideo's ConstantClipsPerVideoSampler, as
``load_and_transform_audio_data`` uses them, are copied below.
"""
from __future__ import annotations

import json
import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "torchaudio" / "torchaudio_2.9.npz"
STAMPS = Path("/usr/share/tuxpaint/stamps")

# name -> (file under STAMPS, first sample, number of samples or None for all): real recordings
RECORDINGS = {
    "pigeon_nl_8k": ("animals/birds/pigeon_desc_nl.ogg", 0, None),           # spoken description, 8 kHz mono
    "digit5_nn_22k": ("symbols/math/5_nn.ogg", 2000, 11025),                # spoken digit, 22.05 kHz mono
    "digit7_el_11k": ("symbols/math/7_el.ogg", 0, 5513),                    # spoken digit, 11.025 kHz mono
    "clothespin_ru_44k": ("clothes/clothespin_new_desc_ru.ogg", 4410, 22051),  # description, 44.1 kHz stereo
    "digit4_it_48k": ("symbols/math/4_it.ogg", 0, 12001),                   # spoken digit, 48 kHz stereo
}


def read(rel: str, start: int, count: int | None) -> tuple[np.ndarray, int]:
    data, rate = soundfile.read(STAMPS / rel, dtype="float32", always_2d=True)
    stop = None if count is None else start + count
    return np.ascontiguousarray(data[start:stop].T), rate


def synthetic(rate: int, n: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A chirp, a tone and a little noise: energy across the band, no silence."""
    t = np.arange(n) / rate
    g = np.random.default_rng(seed)
    sig = [0.4 * np.sin(2 * np.pi * (50 + (rate / 2.2 - 50) * t / t[-1] / 2) * t)
           + 0.2 * np.sin(2 * np.pi * (440 + 110 * c) * t) + 0.02 * g.standard_normal(n) for c in range(channels)]
    return np.stack(sig).astype(np.float32)


# ---- ImageBind (data.py), copied: waveform2melspec and the clip timing it uses -------------
def waveform2melspec(waveform, sample_rate, num_mel_bins, target_length):
    waveform -= waveform.mean()
    fbank = torchaudio.compliance.kaldi.fbank(
        waveform, htk_compat=True, sample_frequency=sample_rate, use_energy=False, window_type="hanning",
        num_mel_bins=num_mel_bins, dither=0.0, frame_length=25, frame_shift=10)
    fbank = fbank.transpose(0, 1)
    n_frames = fbank.size(1)
    p = target_length - n_frames
    if p > 0:
        fbank = torch.nn.functional.pad(fbank, (0, p), mode="constant", value=0)
    elif p < 0:
        fbank = fbank[:, 0:target_length]
    return fbank.unsqueeze(0)


def clip_timepoints(duration: float, clip_duration: int = 2, clips_per_video: int = 3) -> list[tuple]:
    """pytorchvideo ConstantClipsPerVideoSampler(clip_duration=2, clips_per_video=3), called until its last clip."""
    max_start = Fraction(max(duration - clip_duration, 0))
    uniform = Fraction(max_start, max(clips_per_video - 1, 1))
    points, index = [], 0
    while True:
        start = uniform * index
        points.append((start, start + clip_duration))
        index += 1
        if index >= clips_per_video or uniform * index > max_start:
            return points


def imagebind_audio(waveform: torch.Tensor, sr: int, mean: float = -4.268, std: float = 9.138) -> torch.Tensor:
    """load_and_transform_audio_data for one decoded waveform (after torchaudio.load)."""
    sample_rate = 16000
    if sample_rate != sr:
        waveform = torchaudio.functional.resample(waveform, orig_freq=sr, new_freq=sample_rate)
    clips = []
    for start, end in clip_timepoints(waveform.size(1) / sample_rate):
        clip = waveform[:, int(start * sample_rate):int(end * sample_rate)]
        clips.append((waveform2melspec(clip, sample_rate, 128, 204) - mean) / std)
    return torch.stack(clips, dim=0)


# ---- cases ---------------------------------------------------------------------------------
FBANK_OPTIONS = {  # name -> kaldi.fbank keyword arguments beyond the waveform
    "imagebind": dict(htk_compat=True, use_energy=False, window_type="hanning", num_mel_bins=128, dither=0.0),
    "defaults_128": dict(num_mel_bins=128, dither=0.0),
    "energy_first": dict(num_mel_bins=128, use_energy=True, dither=0.0),
    "energy_htk_hamming": dict(num_mel_bins=64, use_energy=True, htk_compat=True, window_type="hamming",
                               raw_energy=False, dither=0.0),
    "rect_no_snip": dict(num_mel_bins=40, window_type="rectangular", snip_edges=False, dither=0.0),
    "blackman_band": dict(num_mel_bins=80, window_type="blackman", low_freq=100.0, high_freq=-400.0,
                          preemphasis_coefficient=0.0, remove_dc_offset=False, dither=0.0),
    "no_round_mean": dict(num_mel_bins=128, round_to_power_of_two=False, subtract_mean=True, frame_length=20.0,
                          frame_shift=12.5, dither=0.0),
    "linear_mag": dict(num_mel_bins=30, use_power=False, use_log_fbank=False, energy_floor=0.0, dither=0.0),
}


def main() -> None:
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, dict] = {"torch": torch.__version__, "torchaudio": torchaudio.__version__,
                             "resample": {}, "fbank": {}, "imagebind": {}}

    def add_resample(name, wave, orig, new, **kw):
        out = AF.resample(torch.from_numpy(wave), orig, new, **kw)
        arrays[f"resample/{name}/output"] = out.numpy()
        meta["resample"][name] = {"orig_freq": orig, "new_freq": new, "options": kw}

    for name, (rel, start, count) in RECORDINGS.items():
        wave, rate = read(rel, start, count)
        arrays[f"recording/{name}"] = wave[:, :512]  # the tests decode the file; these check the decoding
        meta.setdefault("recordings", {})[name] = {"file": rel, "start": start, "count": count, "sample_rate": rate}
        add_resample(name, wave, rate, 16000)
    synth = {"synth_8k_odd": (synthetic(8000, 8001), 8000, 16000, {}),
             "synth_16k_to_44k": (synthetic(16000, 3001, seed=1), 16000, 44100, {}),
             "synth_44k_batch_kaiser": (synthetic(44100, 4411, channels=3, seed=2).reshape(3, 1, -1), 44100, 16000,
                                        dict(resampling_method="sinc_interp_kaiser", beta=12.0)),
             "synth_22k_wide_rolloff": (synthetic(22050, 5001, seed=3), 22050, 16000,
                                        dict(lowpass_filter_width=16, rolloff=0.9))}
    for name, (wave, orig, new, kw) in synth.items():
        arrays[f"resample/{name}/input"] = wave
        add_resample(name, wave, orig, new, **kw)

    # filterbanks: on torchaudio's 16 kHz output of each recording, and synthetic 16k / 8k / odd lengths
    inputs = {name: (arrays[f"resample/{name}/output"], 16000) for name in RECORDINGS}  # read from there
    inputs["synth_16k_odd"] = (synthetic(16000, 8001, seed=4), 16000)
    inputs["synth_8k"] = (synthetic(8000, 6003, seed=5), 8000)
    for name, (wave, rate) in inputs.items():
        if name not in RECORDINGS:
            arrays[f"fbank_input/{name}"] = wave
        for opt_name, opts in FBANK_OPTIONS.items():
            if opt_name != "imagebind" and name not in ("synth_16k_odd", "synth_8k", "clothespin_ru_44k"):
                continue  # every option set on three inputs; ImageBind's on all of them
            if rate == 8000 and opts.get("num_mel_bins", 23) > 64:
                opts = {**opts, "num_mel_bins": 64}  # 8 kHz: 128 bins would leave empty filters
            out = kaldi.fbank(torch.from_numpy(wave[:1]), sample_frequency=rate, **opts)
            arrays[f"fbank/{name}/{opt_name}"] = out.numpy()
            meta["fbank"][f"{name}/{opt_name}"] = {"input": name, "sample_rate": rate, "options": opts}

    # ImageBind's whole audio preprocessing: a 2.2 s recording (three distinct clips) and a short one (padded)
    for name, rel in {"toilet_8k": "household/toilet.ogg", "pigeon_nl_8k": "animals/birds/pigeon_desc_nl.ogg",
                      "digit4_it_48k": "symbols/math/4_it.ogg"}.items():
        wave, rate = read(rel, 0, None)
        mono = torch.from_numpy(wave).mean(0, keepdim=True)  # tether downmixes; ImageBind reads channel 0
        clips = imagebind_audio(mono, rate)
        distinct = 1 if all(torch.equal(clips[0], c) for c in clips[1:]) else len(clips)
        arrays[f"imagebind/{name}"] = clips[:distinct].numpy()  # a short recording's three clips are one
        meta["imagebind"][name] = {"file": rel, "sample_rate": rate, "channels": wave.shape[0],
                                   "clips": len(clips), "stored_clips": distinct}

    OUT.parent.mkdir(parents=True, exist_ok=True)
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    np.savez_compressed(OUT, **arrays)
    size = OUT.stat().st_size
    print(f"wrote {OUT.relative_to(ROOT)}: {len(arrays) - 1} arrays, {size / 1e3:.0f} kB "
          f"(torch {torch.__version__}, torchaudio {torchaudio.__version__})", file=sys.stderr)


if __name__ == "__main__":
    main()
