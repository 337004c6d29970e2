"""Waveform level, silence and augmentation (tether.audio trim/loudness, tether.audio_augment).

Each step is checked for what it is for: trimming finds a word inside silence, loudness lands on
its target, speed moves a tone's frequency by the factor, the equaliser's low-pass removes what
is above its cut-off, noise arrives at the asked signal-to-noise ratio, and an augmentation is a
function of its generator's seed.
"""
from __future__ import annotations

import math

import pytest
import torch

from tether.audio import normalize_loudness, trim_silence
from tether.audio_augment import (WaveAugment, add_noise, band_stop, change_speed, pad_silence, random_eq,
                                  reverberate, time_mask, warp_formants)
from tether.errors import InputError

RATE = 8000


def _tone(freq: float, seconds: float, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * RATE), dtype=torch.float64) / RATE
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float()[None]


def _peak_hz(wave: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(wave[0].double()).abs()
    return float(torch.fft.rfftfreq(wave.shape[-1], 1 / RATE)[spectrum.argmax()])


def test_trim_silence_keeps_the_word_and_nothing_around_it():
    word = _tone(440, 0.4)
    wave = torch.cat([torch.zeros(1, 2000), word, torch.zeros(1, 3000)], dim=1)
    wave[:, :2000] += 1e-4 * torch.randn(1, 2000)  # a noise floor 70 dB below the word: silence
    out = trim_silence(wave, RATE, threshold_db=40)
    assert out.shape[-1] == word.shape[-1]  # 2000 and 3200 are whole 10 ms frames: exactly the word
    assert torch.equal(out, wave[:, 2000:5200])
    loud = torch.full((2, 800), 0.3)
    assert torch.equal(trim_silence(loud, RATE), loud)  # all frames equally loud: nothing to cut
    with pytest.raises(InputError, match="channels, samples"):
        trim_silence(word[0], RATE)


def test_normalize_loudness_reaches_its_rms_target():
    for gain in (0.01, 0.3, 2.0):
        out = normalize_loudness(gain * _tone(300, 0.5), -20.0)
        assert 20 * math.log10(float(out.double().pow(2).mean().sqrt())) == pytest.approx(-20.0, abs=1e-4)
    zeros = torch.zeros(1, 100)
    assert torch.equal(normalize_loudness(zeros), zeros)


def test_change_speed_moves_pitch_and_length_by_the_factor():
    tone = _tone(500, 1.0)
    faster = change_speed(tone, 1.25)  # resampled 20 -> 16
    assert faster.shape[-1] == RATE * 16 // 20
    assert _peak_hz(faster) == pytest.approx(625, abs=2)  # played at the same rate: 1.25 x the pitch
    slower = change_speed(tone, 0.8)
    assert slower.shape[-1] == RATE * 25 // 20 and _peak_hz(slower) == pytest.approx(400, abs=2)
    assert change_speed(tone, 1.0) is tone
    with pytest.raises(InputError, match="positive"):
        change_speed(tone, 0)


def test_random_eq_low_pass_removes_what_is_above_the_cut_off():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 6000, generator=g)
    flat = random_eq(noise, RATE, g, max_db=0.0)
    assert torch.allclose(flat, noise, atol=1e-5)  # 0 dB everywhere: the signal back (FFT rounding)
    cut = random_eq(noise, RATE, g, max_db=6.0, lowpass_hz=1500.0)
    spectrum = torch.fft.rfft(cut[0]).abs().pow(2)
    freqs = torch.fft.rfftfreq(6000, 1 / RATE)
    assert cut.shape == noise.shape
    above, below = spectrum[freqs > 2700].mean(), spectrum[freqs < 1400].mean()
    assert float(above) < 1e-3 * float(below)  # a zero-padded FFT leaks a little past the roll-off


def test_add_noise_arrives_at_the_signal_to_noise_ratio():
    tone = _tone(440, 0.5)
    for colour in (0.0, 1.0, 2.0):
        noisy = add_noise(tone, 10.0, torch.Generator().manual_seed(1), colour=colour)
        ratio = tone.double().pow(2).mean().sqrt() / (noisy - tone).double().pow(2).mean().sqrt()
        assert 20 * math.log10(float(ratio)) == pytest.approx(10.0, abs=1e-3)


def test_reverberation_keeps_length_and_peak_and_rings_after_an_impulse():
    click = torch.zeros(1, 4000)
    click[0, 100] = 1.0
    wet = reverberate(click, RATE, 0.3, torch.Generator().manual_seed(2))
    assert wet.shape == click.shape and float(wet.abs().max()) == pytest.approx(1.0, rel=1e-5)
    early, late = wet[0, 200:1200].pow(2).sum(), wet[0, 2200:3200].pow(2).sum()
    assert float(early) > 0 and float(late) < float(early)  # the tail decays
    assert float(wet[0, :100].abs().max()) < 1e-5  # nothing before the click


def test_warp_formants_moves_frequencies_by_the_factor_and_keeps_the_timing():
    for freq, factor in ((1000, 1.2), (700, 0.85), (440, 1.1)):
        tone = _tone(freq, 1.0)
        warped = warp_formants(tone, factor)
        assert warped.shape == tone.shape and torch.isfinite(warped).all()
        # the steady middle (the first and last frames lack a full window of history)
        assert _peak_hz(warped[:, 1000:7000]) == pytest.approx(freq * factor, abs=RATE / 6000 + 1e-9)
    burst = torch.cat([torch.zeros(1, 4000), _tone(500, 0.25), torch.zeros(1, 2000)], dim=1)
    energy = warp_formants(burst, 1.15).pow(2)[0]
    assert float(energy[:3500].sum() + energy[6500:].sum()) < 0.01 * float(energy.sum())  # still where it was
    assert warp_formants(burst, 1.0) is burst
    with pytest.raises(InputError, match="positive"):
        warp_formants(burst, -1.0)


def test_masks_silence_a_stretch_and_remove_a_band():
    two_tones = _tone(500, 0.5) + _tone(1500, 0.5)
    cut = band_stop(two_tones, RATE, 1200, 1800)
    assert _peak_hz(cut) == pytest.approx(500, abs=2)
    spectrum = torch.fft.rfft(cut[0].double()).abs()
    # 1500 Hz down by more than 40 dB (the filter works on a zero-padded power-of-two FFT: a little leaks)
    assert float(spectrum[int(1500 * 0.5)]) < 1e-2 * float(spectrum.max())
    masked = time_mask(two_tones, 1000, 400)
    assert masked.shape == two_tones.shape and masked[0, 1000:1400].abs().max() == 0
    assert torch.equal(masked[:, :1000], two_tones[:, :1000]) and torch.equal(masked[:, 1400:], two_tones[:, 1400:])
    assert two_tones[0, 1000:1400].abs().max() > 0  # the input is untouched


def test_wave_augment_is_a_function_of_its_seed():
    word = torch.cat([torch.zeros(1, 800), _tone(440, 0.4), torch.zeros(1, 1600)], dim=1)
    augment = WaveAugment()
    a = augment(word, RATE, torch.Generator().manual_seed(5))
    b = augment(word, RATE, torch.Generator().manual_seed(5))
    c = augment(word, RATE, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and a.ndim == 2 and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert a.shape != c.shape or not torch.equal(a, c)
    warping = WaveAugment(p_warp=1.0)
    assert torch.equal(warping(word, RATE, torch.Generator().manual_seed(5)),
                       warping(word, RATE, torch.Generator().manual_seed(5)))
    plain = WaveAugment(trim_db=None, speed=(1.0, 1.0), p_eq=0, p_lowpass=0, p_reverb=0, p_noise=0,
                        gain_db=(0.0, 0.0))
    assert torch.equal(plain(word, RATE, torch.Generator().manual_seed(7)), word)  # every step off: the input
    silent = WaveAugment(silence_s=(0.1, 0.1), speed=(1.0, 1.0), p_eq=0, p_lowpass=0, p_reverb=0, p_noise=0,
                         gain_db=(0.0, 0.0))
    padded = silent(word, RATE, torch.Generator().manual_seed(8))
    assert torch.equal(padded, pad_silence(word[:, 800:4000], 800, 800))  # own silence cut, 0.1 s added each side
    with pytest.raises(InputError, match="channels, samples"):
        augment(word[0], RATE, torch.Generator())
