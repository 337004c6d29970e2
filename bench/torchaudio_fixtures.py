"""Write tests/fixtures/torchaudio/: torchaudio's own resampling and Kaldi filterbanks, and
ImageBind's own audio preprocessing, on real Tux Paint recordings and synthetic signals.

tether's pure-torch versions (tether.audio, the audio processor) are compared with these
within 1e-4 (tests/test_audio.py, tests/test_audio_modality.py). Run once, in a peer venv
(torchaudio does not install beside tether's torch); ImageBind's code is used from a checkout,
never copied into tether (it is CC BY-NC-SA):

    python -m venv bench/.venv-torchaudio
    bench/.venv-torchaudio/bin/pip install torch==2.9.1
    bench/.venv-torchaudio/bin/pip install "torchaudio==2.9.*" soundfile numpy
    bench/.venv-torchaudio/bin/pip install timm ftfy regex einops iopath "torchvision==0.24.1" pytorchvideo
    git clone https://github.com/facebookresearch/ImageBind bench/.venv-torchaudio/src/ImageBind  # 53680b0
    bench/.venv-torchaudio/bin/python bench/torchaudio_fixtures.py

Recordings are decoded with soundfile (torchaudio 2.9's own loader needs torchcodec); each
case stores the start of its decoded input, so the tests check tether's decoding as well.
"""
from __future__ import annotations

import json
import sys
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
IMAGEBIND = ROOT / "bench" / ".venv-torchaudio" / "src" / "ImageBind"

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


def imagebind_modules():
    """ImageBind's data and model modules, from the checkout. pytorchvideo 0.1.5 (PyPI) still imports
    torchvision.transforms.functional_tensor, which torchvision renamed to _functional_tensor; ImageBind
    pins a later pytorchvideo commit that reads the new name, so the old name is aliased here."""
    import torchvision.transforms._functional_tensor as functional_tensor
    sys.modules.setdefault("torchvision.transforms.functional_tensor", functional_tensor)
    sys.path.insert(0, str(IMAGEBIND))
    import imagebind.data as data
    from imagebind.models import imagebind_model
    return data, imagebind_model


def imagebind_audio(path: Path) -> torch.Tensor:
    """ImageBind's ``load_and_transform_audio_data`` on one file. Its ``torchaudio.load`` (which needs
    torchcodec in torchaudio 2.9) is replaced by soundfile, averaging the channels as tether does
    (ImageBind itself would analyse a stereo file's first channel)."""
    data, _ = imagebind_modules()

    def load(p):
        wave, rate = soundfile.read(p, dtype="float32", always_2d=True)
        return torch.from_numpy(wave.T.copy()).mean(0, keepdim=True), rate

    real_load, torchaudio.load = torchaudio.load, load
    try:
        return data.load_and_transform_audio_data([str(path)], "cpu")[0]
    finally:
        torchaudio.load = real_load


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

    # ImageBind's whole audio preprocessing: a 2.2 s recording (three distinct clips) and two short ones (padded)
    for name, rel in {"toilet_8k": "household/toilet.ogg", "pigeon_nl_8k": "animals/birds/pigeon_desc_nl.ogg",
                      "digit4_it_48k": "symbols/math/4_it.ogg"}.items():
        info = soundfile.info(STAMPS / rel)
        arrays[f"imagebind/{name}"] = imagebind_audio(STAMPS / rel).numpy()
        meta["imagebind"][name] = {"file": rel, "sample_rate": info.samplerate, "channels": info.channels}

    OUT.parent.mkdir(parents=True, exist_ok=True)
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    np.savez_compressed(OUT, **arrays)
    size = OUT.stat().st_size
    print(f"wrote {OUT.relative_to(ROOT)}: {len(arrays) - 1} arrays, {size / 1e3:.0f} kB "
          f"(torch {torch.__version__}, torchaudio {torchaudio.__version__})", file=sys.stderr)


if __name__ == "__main__":
    main()
