"""Audio in pure torch: decode (soundfile), resample, and Kaldi-style log-mel filterbanks.

torchaudio does not install beside tether's torch, so the two functions ImageBind's audio
preprocessing needs are written here: :func:`resample` is ``torchaudio.functional.resample``
(windowed-sinc interpolation, Hann or Kaiser window) and :func:`fbank` is
``torchaudio.compliance.kaldi.fbank`` (itself Kaldi's ``compute-fbank-feats``), with the same
defaults except ``dither`` (0 here: no randomness in embeddings). Both follow torchaudio 2.9's
code step by step (BSD-2-Clause) and are tested equal to it within 1e-4 on fixtures that
torchaudio wrote (``bench/torchaudio_fixtures.py``, ``tests/fixtures/torchaudio/``).
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F

from .errors import AudioDecodeError, InputError

__all__ = ["WINDOW_TYPES", "fbank", "load_audio", "mel_banks", "normalize_loudness", "resample", "trim_silence"]

AudioSource = Union[str, os.PathLike, bytes]
WINDOW_TYPES = ("hamming", "hanning", "povey", "rectangular", "blackman")
_EPS = torch.finfo(torch.float32).eps  # Kaldi's floor under logs (torchaudio: torch.finfo(torch.float).eps)


def load_audio(path: AudioSource) -> tuple[torch.Tensor, int]:
    """Decode an audio file (WAV, FLAC, OGG/Vorbis, ... whatever libsndfile reads) or its bytes.

    Headerless files named by extension: ``.gsm`` is raw GSM 6.10 at 8 kHz mono (Asterisk's
    telephony prompts), read as such.

    Returns (waveform, sample_rate): float32 (channels, samples) in [-1, 1] for integer formats.
    Raises :class:`~tether.errors.AudioDecodeError` naming the file when it is missing, cannot be
    decoded, or declares a sample rate that is not positive.
    """
    try:
        import soundfile
    except ImportError as err:
        raise ImportError("reading audio needs soundfile: pip install soundfile (or 'tether[audio]')") from err

    name = "<bytes>" if isinstance(path, (bytes, bytearray)) else os.fspath(path)
    if not isinstance(path, (bytes, bytearray)):
        if not Path(name).exists():
            raise AudioDecodeError(name, "file not found", "missing_audio")
        if Path(name).is_dir():
            raise AudioDecodeError(name, "path is a directory", "missing_audio")
    try:
        raw = _RAW_FORMATS.get(Path(name).suffix.lower(), {})
        data, rate = soundfile.read(io.BytesIO(path) if isinstance(path, (bytes, bytearray)) else name,
                                    dtype="float32", always_2d=True, **raw)
    except (RuntimeError, OSError, ValueError, TypeError, EOFError) as err:  # LibsndfileError is a RuntimeError
        if _wav_header_rate(path[:4096] if isinstance(path, (bytes, bytearray)) else _head(name)) == 0:
            raise AudioDecodeError(name, "sample rate 0 in the WAV header: expected a positive number",
                                   "invalid_audio") from err
        raise AudioDecodeError(name, _one_line(err)) from err
    if not rate or rate <= 0:
        raise AudioDecodeError(name, f"sample rate {rate}: expected a positive number", "invalid_audio")
    return torch.from_numpy(data.T.copy()), int(rate)


#: headerless formats soundfile cannot detect, by file extension -> how to read them
_RAW_FORMATS: dict[str, dict] = {".gsm": {"format": "RAW", "subtype": "GSM610", "samplerate": 8000, "channels": 1}}


def _head(path: str, size: int = 4096) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _wav_header_rate(head: bytes) -> int | None:
    """The sample rate a RIFF/WAVE header declares (libsndfile refuses 0 without saying so), or None."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    at = head.find(b"fmt ", 12)
    if at < 0 or len(head) < at + 16:
        return None
    return int.from_bytes(head[at + 12:at + 16], "little")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:200]


# ---- level and silence --------------------------------------------------------------------------
def trim_silence(waveform: torch.Tensor, sample_rate: int, threshold_db: float = 40.0,
                 frame_ms: float = 10.0) -> torch.Tensor:
    """(channels, samples) without its leading and trailing frames quieter than ``threshold_db``
    below the loudest frame (RMS over all channels, frames of ``frame_ms``).

    A spoken word fills a fixed-length clip the same way whatever silence or padding its
    recording had around it: the words then start at the start of every clip, real or synthetic.
    Nothing is cut from inside; a waveform whose frames are all equally loud is returned whole.
    """
    if waveform.ndim != 2:
        raise InputError(f"trim_silence: expected a (channels, samples) waveform, got {tuple(waveform.shape)}")
    hop = max(1, int(sample_rate * frame_ms * 0.001))
    n = waveform.shape[-1] // hop
    if n < 2:
        return waveform
    rms = waveform[:, :n * hop].reshape(waveform.shape[0], n, hop).pow(2).mean(dim=(0, 2)).sqrt()
    loud = rms >= rms.max() * 10.0 ** (-threshold_db / 20.0)
    if not bool(loud.any()):
        return waveform
    where = loud.nonzero().flatten()
    first, last = int(where[0]), int(where[-1])
    end = waveform.shape[-1] if last == n - 1 else (last + 1) * hop  # keep the partial frame at the very end
    return waveform[:, first * hop:end]


def normalize_loudness(waveform: torch.Tensor, target_dbfs: float = -20.0) -> torch.Tensor:
    """The waveform scaled so that its RMS is ``target_dbfs`` (dB relative to full scale 1.0); a
    silent (all-zero) waveform is returned as it is. Peaks may exceed 1.0: nothing is clipped."""
    rms = float(waveform.pow(2).mean().sqrt()) if waveform.numel() else 0.0
    if rms == 0.0:
        return waveform
    return waveform * (10.0 ** (target_dbfs / 20.0) / rms)


# ---- resampling ---------------------------------------------------------------------------------
def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6,
             rolloff: float = 0.99, resampling_method: str = "sinc_interp_hann",
             beta: float | None = None) -> torch.Tensor:
    """(..., time) at ``orig_freq`` -> (..., ceil(time * new / orig)) at ``new_freq``:
    ``torchaudio.functional.resample``'s band-limited windowed-sinc interpolation.

    The frequencies are reduced by their gcd; one polyphase kernel per output phase runs as a
    strided conv1d. The kernel is computed in the waveform's dtype, as torchaudio does.
    """
    if not (int(orig_freq) == orig_freq and int(new_freq) == new_freq) or orig_freq <= 0 or new_freq <= 0:
        raise InputError(f"resample: sample rates must be positive integers, got {orig_freq} -> {new_freq}")
    if not waveform.is_floating_point():
        raise InputError(f"resample: expected a floating-point waveform, got {waveform.dtype}")
    if orig_freq == new_freq:
        return waveform
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    kernel, width = _sinc_kernel(orig, new, lowpass_filter_width, rolloff, resampling_method, beta,
                                 waveform.device, waveform.dtype)
    shape = waveform.shape
    flat = waveform.reshape(-1, shape[-1])
    length = flat.shape[-1]
    padded = F.pad(flat, (width, width + orig))
    out = F.conv1d(padded[:, None], kernel, stride=orig).transpose(1, 2).reshape(flat.shape[0], -1)
    target = math.ceil(new * length / orig)
    return out[..., :target].reshape(shape[:-1] + (-1,))


def _sinc_kernel(orig: int, new: int, lowpass_filter_width: int, rolloff: float, method: str,
                 beta: float | None, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    """The (new, 1, 2 * width + orig) polyphase filters and their half-width (torchaudio's kernel)."""
    if method not in ("sinc_interp_hann", "sinc_interp_kaiser"):
        raise InputError(f"resample: resampling_method={method!r}: expected 'sinc_interp_hann' or "
                         "'sinc_interp_kaiser'")
    if lowpass_filter_width <= 0:
        raise InputError(f"resample: lowpass_filter_width must be positive, got {lowpass_filter_width}")
    base_freq = min(orig, new) * rolloff  # below both Nyquists: anti-aliasing either way
    width = math.ceil(lowpass_filter_width * orig / base_freq)
    idx = torch.arange(-width, width + orig, dtype=dtype, device=device)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=dtype, device=device)[:, None, None] / new + idx
    t *= base_freq
    t = t.clamp_(-lowpass_filter_width, lowpass_filter_width)
    if method == "sinc_interp_hann":
        window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    else:
        b = torch.tensor(float(14.769656459379492 if beta is None else beta))
        window = torch.i0(b * torch.sqrt(1 - (t / lowpass_filter_width) ** 2)) / torch.i0(b)
    t *= math.pi
    kernels = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t)
    kernels *= window * (base_freq / orig)
    return kernels, width


# ---- Kaldi filterbank ---------------------------------------------------------------------------
def _mel(freq: float | torch.Tensor):
    return 1127.0 * (math.log(1.0 + freq / 700.0) if isinstance(freq, float) else (1.0 + freq / 700.0).log())


def mel_banks(num_bins: int, padded_window: int, sample_rate: float, low_freq: float,
              high_freq: float) -> torch.Tensor:
    """Kaldi's triangular mel filters, (num_bins, padded_window // 2), float32 (no VTLN warping)."""
    nyquist = 0.5 * sample_rate
    high = high_freq + nyquist if high_freq <= 0.0 else high_freq
    if num_bins <= 3 or not (0.0 <= low_freq < nyquist and 0.0 < high <= nyquist and low_freq < high):
        raise InputError(f"fbank: num_mel_bins={num_bins} (> 3), low_freq={low_freq}, high_freq={high_freq} "
                         f"do not fit a Nyquist frequency of {nyquist} Hz")
    mel_low, mel_high = _mel(float(low_freq)), _mel(float(high))
    delta = (mel_high - mel_low) / (num_bins + 1)
    b = torch.arange(num_bins).unsqueeze(1)
    left, center, right = (mel_low + (b + k) * delta for k in (0.0, 1.0, 2.0))
    mel = _mel(sample_rate / padded_window * torch.arange(padded_window / 2)).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    return torch.max(torch.zeros(1), torch.min(up, down))


def _window(kind: str, size: int, blackman_coeff: float, like: torch.Tensor) -> torch.Tensor:
    opts = dict(device=like.device, dtype=like.dtype)
    if kind == "hanning":
        return torch.hann_window(size, periodic=False, **opts)
    if kind == "hamming":
        return torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46, **opts)
    if kind == "povey":
        return torch.hann_window(size, periodic=False, **opts).pow(0.85)
    if kind == "rectangular":
        return torch.ones(size, **opts)
    if kind == "blackman":
        a = 2 * math.pi / (size - 1)
        n = torch.arange(size, **opts)
        return (blackman_coeff - 0.5 * torch.cos(a * n) + (0.5 - blackman_coeff) * torch.cos(2 * a * n)).to(**opts)
    raise InputError(f"fbank: window_type={kind!r}: expected one of {', '.join(WINDOW_TYPES)}")


def _frames(wave: torch.Tensor, size: int, shift: int, snip_edges: bool) -> torch.Tensor:
    """(m, size) frames: whole windows only (snip_edges), or about len/shift frames with the ends reflected."""
    n = wave.shape[0]
    if snip_edges:
        if n < size:
            return wave.new_empty((0, size))
        m = 1 + (n - size) // shift
    else:
        flipped = torch.flip(wave, [0])
        m = (n + shift // 2) // shift
        pad = size // 2 - shift // 2
        wave = torch.cat((flipped[-pad:], wave, flipped)) if pad > 0 else torch.cat((wave[-pad:], flipped))
    return wave.as_strided((m, size), (shift * wave.stride(0), wave.stride(0)))


def _log_energy(frames: torch.Tensor, energy_floor: float) -> torch.Tensor:
    energy = frames.pow(2).sum(1).clamp(min=_EPS).log()
    return energy if energy_floor == 0.0 else energy.clamp(min=math.log(energy_floor))


def fbank(waveform: torch.Tensor, sample_rate: float, num_mel_bins: int = 128, frame_length: float = 25.0,
          frame_shift: float = 10.0, *, blackman_coeff: float = 0.42, channel: int = -1, dither: float = 0.0,
          energy_floor: float = 1.0, high_freq: float = 0.0, htk_compat: bool = False, low_freq: float = 20.0,
          min_duration: float = 0.0, preemphasis_coefficient: float = 0.97, raw_energy: bool = True,
          remove_dc_offset: bool = True, round_to_power_of_two: bool = True, snip_edges: bool = True,
          subtract_mean: bool = False, use_energy: bool = False, use_log_fbank: bool = True,
          use_power: bool = True, window_type: str = "povey") -> torch.Tensor:
    """Log-mel filterbank features (frames, num_mel_bins [+1 with use_energy]) of a (channels, samples)
    waveform: ``torchaudio.compliance.kaldi.fbank`` with ``sample_frequency=sample_rate`` and
    the same defaults, except ``dither`` (0). Like torchaudio, it reads one channel
    (``channel``; -1 means the first): downmix first for the average of all.
    ImageBind's settings: ``htk_compat=True, use_energy=False, window_type="hanning"``.
    """
    wave, shift, size, padded = _wave_and_window(waveform, channel, sample_rate, frame_shift, frame_length,
                                                 round_to_power_of_two, preemphasis_coefficient)
    if wave.shape[0] < min_duration * sample_rate:
        return waveform.new_empty(0)
    frames = _frames(wave, size, shift, snip_edges)
    if dither != 0.0:
        frames = frames + torch.randn_like(frames) * dither
    if remove_dc_offset:
        frames = frames - frames.mean(dim=1, keepdim=True)
    energy = _log_energy(frames, energy_floor) if raw_energy else None
    if preemphasis_coefficient != 0.0:
        previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # the first sample repeats (Kaldi)
        frames = frames - preemphasis_coefficient * previous
    frames = frames * _window(window_type, size, blackman_coeff, frames).unsqueeze(0)
    if padded != size:
        frames = F.pad(frames, (0, padded - size))
    if not raw_energy:
        energy = _log_energy(frames, energy_floor)
    spectrum = torch.fft.rfft(frames).abs()
    if use_power:
        spectrum = spectrum.pow(2.0)
    banks = mel_banks(num_mel_bins, padded, sample_rate, low_freq, high_freq).to(frames)
    mel = spectrum @ F.pad(banks, (0, 1)).T  # the Nyquist bin has no filter
    if use_log_fbank:
        mel = mel.clamp(min=_EPS).log()
    if use_energy:
        mel = torch.cat((mel, energy[:, None]) if htk_compat else (energy[:, None], mel), dim=1)
    return mel - mel.mean(dim=0, keepdim=True) if subtract_mean else mel


def _wave_and_window(waveform: torch.Tensor, channel: int, sample_rate: float, frame_shift: float,
                     frame_length: float, round_to_power_of_two: bool,
                     preemphasis_coefficient: float) -> tuple[torch.Tensor, int, int, int]:
    """The channel to analyse and the window's shift, length and FFT length in samples."""
    if waveform.ndim != 2 or not waveform.is_floating_point():
        raise InputError(f"fbank: expected a floating-point (channels, samples) waveform, got "
                         f"{tuple(waveform.shape)} {waveform.dtype}")
    if not sample_rate > 0:
        raise InputError(f"fbank: sample_rate must be positive, got {sample_rate}")
    channel = max(channel, 0)
    if channel >= waveform.shape[0]:
        raise InputError(f"fbank: channel {channel} of a waveform with {waveform.shape[0]} channels")
    shift = int(sample_rate * frame_shift * 0.001)
    size = int(sample_rate * frame_length * 0.001)
    padded = 1 << (size - 1).bit_length() if round_to_power_of_two and size > 0 else size
    wave = waveform[channel]
    if not 2 <= size <= wave.shape[0]:
        raise InputError(f"fbank: {wave.shape[0]} samples cannot hold one {frame_length} ms window "
                         f"({size} samples at {sample_rate} Hz)")
    if shift <= 0 or padded % 2 or not 0.0 <= preemphasis_coefficient <= 1.0:
        raise InputError(f"fbank: frame_shift={frame_shift} ms, padded window {padded}, preemphasis "
                         f"{preemphasis_coefficient}: expected a positive shift, an even window and [0, 1]")
    return wave, shift, size, padded
