"""Waveform augmentation in torch: the variety one synthetic voice lacks, drawn per training sample.

A tower trained on clean synthesised speech meets real recordings made with other microphones,
rooms, levels and sample rates. :class:`WaveAugment` draws, from a ``torch.Generator`` (so a
sample's augmentation follows from the pipeline's per-(seed, epoch, index) random numbers and a
resumed run sees the same ones):

- silence: the recording's own silence trimmed, and a random stretch of it added before and after
  (real recordings start and stop at different points; the noise below then fills it);
- speed: tempo and pitch together, by resampling with a ratio of small integers (``n / 20``);
- a random equaliser: a smooth gain curve over log-frequency (microphone and channel colour),
  including a low-pass at a random cut-off (recordings at 8 or 11 kHz have nothing above 4-5.5 kHz);
- formant warp: every frequency (formants and harmonics) moved by a factor near 1 at the same
  tempo (vocal tract length perturbation: longer and shorter vocal tracts than the voices had);
- masks (SpecAugment on the waveform, Park et al. 2019): short stretches of time silenced and
  frequency bands cut out, so no single cue decides;
- reverberation: convolution with exponentially decaying noise (a small room's impulse response);
- additive noise of random colour (white to brown) at a random signal-to-noise ratio;
- gain.

Every step keeps the waveform's shape (channels, samples) except speed, which changes its length.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .audio import resample, trim_silence
from .errors import InputError

__all__ = ["WaveAugment", "add_noise", "band_stop", "change_speed", "pad_silence", "random_eq", "reverberate",
           "time_mask", "warp_formants"]


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def change_speed(waveform: torch.Tensor, factor: float, denominator: int = 20) -> torch.Tensor:
    """Play ``factor`` times as fast (tempo and pitch): resampled by ``round(denominator / factor) /
    denominator``, a ratio of small integers so the polyphase filter stays small."""
    if not factor > 0:
        raise InputError(f"change_speed: factor must be positive, got {factor}")
    new = max(1, round(denominator / factor))
    return waveform if new == denominator else resample(waveform, denominator, new)


def pad_silence(waveform: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """``before`` and ``after`` samples of digital silence around the waveform."""
    return torch.nn.functional.pad(waveform, (before, after))


def _fft_size(n: int) -> int:
    """The power of two at or above ``n``: FFTs of arbitrary lengths (a prime factor of 101) are slow."""
    return 1 << max(0, n - 1).bit_length()


def _fft_filter(waveform: torch.Tensor, gain_of: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """Multiply the spectrum (zero-padded rfft of the last dim, ``size`` points) by ``gain_of(size)``
    (one value per bin), cut back to the input's length."""
    n = waveform.shape[-1]
    size = _fft_size(n)
    return torch.fft.irfft(torch.fft.rfft(waveform, n=size) * gain_of(size), n=size)[..., :n]


def random_eq(waveform: torch.Tensor, sample_rate: int, generator: torch.Generator, max_db: float = 10.0,
              points: int = 6, lowpass_hz: float | None = None) -> torch.Tensor:
    """A smooth random gain curve (``points`` values in +-``max_db`` dB, linear in log-frequency
    between 50 Hz and Nyquist) and, with ``lowpass_hz``, a cut above that frequency (a 1 kHz cosine
    roll-off)."""
    knots = torch.linspace(math.log(50.0), math.log(sample_rate / 2), points)
    values = (torch.rand(points, generator=generator) * 2 - 1) * max_db

    def gain_of(size: int) -> torch.Tensor:
        freqs = torch.fft.rfftfreq(size, 1.0 / sample_rate)
        where = freqs.clamp(min=50.0).log()
        idx = torch.searchsorted(knots, where).clamp(1, points - 1)
        t = ((where - knots[idx - 1]) / (knots[idx] - knots[idx - 1])).clamp(0, 1)
        gain = 10.0 ** ((values[idx - 1] + t * (values[idx] - values[idx - 1])) / 20.0)
        if lowpass_hz is not None:
            gain = gain * 0.5 * (1 + torch.cos(math.pi * ((freqs - lowpass_hz) / 1000.0).clamp(0, 1)))
        return gain.to(waveform.dtype)
    return _fft_filter(waveform, gain_of)


def warp_formants(waveform: torch.Tensor, factor: float, n_fft: int = 256) -> torch.Tensor:
    """Move every spectral component at frequency f to ``factor * f`` while the timing stays: a
    short-time Fourier transform whose magnitudes are read from bin ``k / factor`` and whose phases
    advance at ``factor`` times that bin's instantaneous frequency (a phase vocoder), so formants
    and harmonics move together and a sine at f comes out at ``factor * f``. Vocal tract length
    perturbation (Jaitly and Hinton, 2013), on the waveform. ``factor`` 1 returns the input."""
    if factor == 1.0:
        return waveform
    if not factor > 0:
        raise InputError(f"warp_formants: factor must be positive, got {factor}")
    n, hop = waveform.shape[-1], n_fft // 4
    window = torch.hann_window(n_fft, dtype=waveform.dtype)
    spec = torch.stft(waveform.reshape(-1, n), n_fft, hop_length=hop, window=window, return_complex=True)
    bins = spec.shape[-2]
    source = torch.arange(bins, dtype=waveform.dtype) / factor  # the (fractional) bin each output bin reads
    low = source.floor().long().clamp(0, bins - 1)
    high = (low + 1).clamp(max=bins - 1)
    t = (source - low).clamp(0, 1)[:, None]
    mag = spec.abs()
    warped = (mag[:, low] * (1 - t) + mag[:, high] * t) * (source <= bins - 1)[:, None]
    # instantaneous frequency (radians per hop) of each source bin, from its phase advance
    expected = 2 * math.pi * hop * torch.arange(bins, dtype=waveform.dtype)[:, None] / n_fft
    phase = spec.angle()
    advance = torch.diff(phase, dim=-1, prepend=phase[..., :1] - expected) - expected
    advance = expected + torch.remainder(advance + math.pi, 2 * math.pi) - math.pi
    advance = advance[:, low] * (1 - t) + advance[:, high] * t
    start = phase[:, low, :1]
    out_phase = torch.cat([start, start + torch.cumsum(advance[..., 1:] * factor, dim=-1)], dim=-1)
    out = torch.istft(torch.polar(warped, out_phase), n_fft, hop_length=hop, window=window, length=n)
    return out.reshape(waveform.shape)


def time_mask(waveform: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """Samples ``start`` .. ``start + length`` set to zero (a copy)."""
    out = waveform.clone()
    out[..., max(0, start):max(0, start + length)] = 0.0
    return out


def band_stop(waveform: torch.Tensor, sample_rate: int, low_hz: float, high_hz: float) -> torch.Tensor:
    """Everything between ``low_hz`` and ``high_hz`` removed (a brick-wall band-stop in the spectrum)."""
    def gain_of(size: int) -> torch.Tensor:
        freqs = torch.fft.rfftfreq(size, 1.0 / sample_rate)
        return ((freqs < low_hz) | (freqs > high_hz)).to(waveform.dtype)
    return _fft_filter(waveform, gain_of)


def reverberate(waveform: torch.Tensor, sample_rate: int, rt60: float, generator: torch.Generator,
                wet: float = 0.5) -> torch.Tensor:
    """Convolve with a decaying-noise impulse response (energy down 60 dB after ``rt60`` seconds),
    mixed ``wet`` : ``1 - wet`` with the dry signal, rescaled to the dry signal's peak; the tail past
    the original length is dropped."""
    length = max(1, int(rt60 * sample_rate))
    t = torch.arange(length, dtype=waveform.dtype) / sample_rate
    ir = torch.randn(length, generator=generator).to(waveform.dtype) * torch.exp(-6.9078 * t / rt60)
    ir[0] = 0.0
    ir = ir / ir.norm().clamp(min=1e-12)
    n = waveform.shape[-1]
    size = _fft_size(n + length - 1)
    tail = torch.fft.irfft(torch.fft.rfft(waveform, n=size) * torch.fft.rfft(ir, n=size), n=size)[..., :n]
    out = (1 - wet) * waveform + wet * tail
    peak_in, peak_out = waveform.abs().max(), out.abs().max()
    return out * (peak_in / peak_out) if float(peak_out) > 0 else out


def add_noise(waveform: torch.Tensor, snr_db: float, generator: torch.Generator, colour: float = 0.0) -> torch.Tensor:
    """Add noise at ``snr_db`` below the waveform's RMS; ``colour`` is the exponent of its 1/f^colour
    power spectrum (0 white, 1 pink, 2 brown)."""
    noise = torch.randn(waveform.shape, generator=generator).to(waveform.dtype)
    if colour:
        noise = _fft_filter(noise, lambda size: torch.arange(size // 2 + 1, dtype=waveform.dtype).clamp(min=1.0)
                            .pow(-colour / 2))
    signal_rms = waveform.pow(2).mean().sqrt()
    noise_rms = noise.pow(2).mean().sqrt().clamp(min=1e-12)
    return waveform + noise * (signal_rms / noise_rms * 10.0 ** (-snr_db / 20.0))


@dataclass
class WaveAugment:
    """Random augmentation of one (channels, samples) waveform; each step runs with its probability.

    Ranges are (low, high), drawn uniformly: ``silence_s`` (seconds added before and after, each
    drawn, after trimming the recording's own silence below ``trim_db``; None: keep it), ``speed``
    (tempo factor), ``eq_db`` (the equaliser's largest gain), ``lowpass_hz`` (cut-off), ``rt60``
    (seconds), ``snr_db``, ``noise_colour``, ``gain_db``, ``warp`` (formant factor, with
    probability ``p_warp``), ``time_mask_s`` (a silenced stretch, with ``p_time_mask``),
    ``band_stop_hz`` (the width of a removed band at a random place, with ``p_band_stop``).
    """

    trim_db: float | None = 50.0
    silence_s: tuple[float, float] = (0.0, 0.25)
    speed: tuple[float, float] = (0.8, 1.25)
    p_eq: float = 0.8
    eq_db: tuple[float, float] = (0.0, 12.0)
    p_lowpass: float = 0.4
    lowpass_hz: tuple[float, float] = (2500.0, 5500.0)
    p_reverb: float = 0.4
    rt60: tuple[float, float] = (0.1, 0.6)
    p_noise: float = 0.8
    snr_db: tuple[float, float] = (5.0, 40.0)
    noise_colour: tuple[float, float] = (0.0, 2.0)
    gain_db: tuple[float, float] = (-12.0, 6.0)
    p_warp: float = 0.0
    warp: tuple[float, float] = (0.85, 1.18)
    p_time_mask: float = 0.0
    time_mask_s: tuple[float, float] = (0.03, 0.12)
    p_band_stop: float = 0.0
    band_stop_hz: tuple[float, float] = (100.0, 800.0)

    def __call__(self, waveform: torch.Tensor, sample_rate: int, generator: torch.Generator) -> torch.Tensor:
        if waveform.ndim != 2 or not waveform.is_floating_point():
            raise InputError(f"WaveAugment: expected a floating-point (channels, samples) waveform, got "
                             f"{tuple(waveform.shape)} {waveform.dtype}")
        u = lambda low_high: _uniform(generator, *low_high)  # noqa: E731
        chance = lambda p: float(torch.rand((), generator=generator)) < p  # noqa: E731
        wave = waveform
        if self.trim_db is not None:
            wave = trim_silence(wave, sample_rate, self.trim_db)
            wave = pad_silence(wave, int(u(self.silence_s) * sample_rate), int(u(self.silence_s) * sample_rate))
        wave = change_speed(wave, u(self.speed))
        if chance(self.p_warp):
            wave = warp_formants(wave, u(self.warp))
        do_eq, do_lowpass = chance(self.p_eq), chance(self.p_lowpass)
        if do_eq or do_lowpass:
            cut = min(u(self.lowpass_hz), sample_rate / 2) if do_lowpass else None
            wave = random_eq(wave, sample_rate, generator, max_db=u(self.eq_db) if do_eq else 0.0, lowpass_hz=cut)
        if chance(self.p_time_mask):
            length = int(u(self.time_mask_s) * sample_rate)
            wave = time_mask(wave, int(u((0.0, 1.0)) * max(0, wave.shape[-1] - length)), length)
        if chance(self.p_band_stop):
            width, low = u(self.band_stop_hz), u((100.0, sample_rate / 2))
            wave = band_stop(wave, sample_rate, low, low + width)
        if chance(self.p_reverb):
            wave = reverberate(wave, sample_rate, u(self.rt60), generator)
        if chance(self.p_noise):
            wave = add_noise(wave, u(self.snr_db), generator, colour=u(self.noise_colour))
        return wave * 10.0 ** (u(self.gain_db) / 20.0)
