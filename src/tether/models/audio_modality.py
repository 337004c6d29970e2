"""The "audio" modality: recordings -> clips of normalised log-mel spectrograms -> a patch transformer.

ImageBind's preprocessing (``data.load_and_transform_audio_data``): decode, downmix, resample to
16 kHz, cut 3 clips of 2 s starting at 0, 1/3 and 2/3 of (duration - 2 s) (pytorchvideo's
ConstantClipsPerVideoSampler timing), a 128-bin Kaldi filterbank per clip (25 ms Hann windows
every 10 ms, HTK-compatible) padded with zeros or cut to 204 frames, normalised with mean
-4.268 and std 9.138. One recording becomes a (clips, 1, 128, 204) row; ``AlignedModel.encode``
embeds each clip and averages the L2-normalised clip embeddings (see docs/modalities.md).

One deliberate difference from ImageBind's code: stereo is averaged to mono (ImageBind's
filterbank reads the first channel only). One quirk is kept, for equal embeddings: ImageBind
subtracts each clip's mean in place from a view of the shared waveform, so a clip overlapping
earlier ones carries their offsets (a small step where an earlier clip ended; the filterbank's
per-frame DC removal hides the rest).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..audio import fbank, load_audio, normalize_loudness, resample, trim_silence
from ..config import PatchTowerConfig, TowerConfig
from ..errors import AudioDecodeError, ConfigError
from ..modalities import Modality, register_modality, tower_builder
from .spectrogram_cnn import SpectrogramCNN
from .vit import VisionTransformer

__all__ = ["AUDIO", "AUDIO_EXTENSIONS", "AudioProcessor", "AudioProcessorConfig", "AudioTowerConfig"]


@dataclass
class AudioTowerConfig(PatchTowerConfig):
    """An audio tower: a patch transformer over (1, mel bins, frames) spectrogram clips, with
    ImageBind's audio encoder's defaults (patch 16, stride 10, 128 x 204 inputs, LayerNorm after
    the stem, learned key/value tokens, no LayerNorm before the blocks, GELU, eps 1e-6, fixed
    logit scale 20). ``processor``: :class:`AudioProcessorConfig` keys. ``kind`` "cnn" is a small
    convolutional tower instead (:class:`~tether.models.spectrogram_cnn.SpectrogramCNN`: ``layers``
    conv blocks up to ``width`` channels; the patch and attention settings do not apply)."""

    input_size: tuple[int, ...] = (128, 204)
    patch_size: int = 16
    patch_stride: int | None = 10
    act: str = "gelu"
    ln_eps: float = 1e-6
    ln_pre: bool = False
    patch_norm: bool = True
    attn_bias_kv: bool = True
    drop_path: float = 0.1
    logit_scale: float | None = 20.0
    processor: dict[str, Any] = field(default_factory=dict)

    def validate(self, where: str) -> None:
        super().validate(where)
        if len(self.input_size) != 2 or self.in_channels != 1:
            raise ConfigError(f"{where}: an audio tower takes (1, mel bins, frames) clips; got in_channels="
                              f"{self.in_channels}, input_size={list(self.input_size)}")


@dataclass
class AudioProcessorConfig:
    """How a recording becomes clips (ImageBind's values); ``silence_threshold``: a recording whose
    every sample is at most this loud (peak, full scale 1.0; 1e-4 is -80 dBFS) is refused as silent.

    Two options ImageBind does not have (off by default), for short recordings from many sources
    (a spoken word): ``trim_db`` cuts leading and trailing 10 ms frames quieter than the loudest
    by this many dB (:func:`tether.audio.trim_silence`), so every word starts at its clip's start;
    ``loudness_dbfs`` then scales the recording to this RMS level (:func:`tether.audio.normalize_loudness`).
    Both run at ``sample_rate``, before the clips are cut. ``mean_norm`` subtracts each mel bin's
    mean over the clip's frames from it (cepstral mean normalisation: a microphone's or room's
    fixed colouring is a constant in log-mel, and goes) before the clip is padded."""

    sample_rate: int = 16000
    num_mel_bins: int = 128
    target_length: int = 204  # frames per clip: 2 s gives 198, padded with zeros
    clip_duration: float = 2.0
    clips: int = 3
    mean: float = -4.268
    std: float = 9.138
    frame_length: float = 25.0  # ms
    frame_shift: float = 10.0  # ms
    silence_threshold: float = 1e-4
    trim_db: float | None = None
    loudness_dbfs: float | None = None
    mean_norm: bool = False

    @classmethod
    def for_tower(cls, cfg: TowerConfig) -> "AudioProcessorConfig":
        """The tower's ``processor`` settings; mel bins and frames default to its input size."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg.processor) - known)
        if unknown:
            raise ConfigError(f"towers.audio.processor: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        size = getattr(cfg, "input_size", (128, 204))
        settings = {"num_mel_bins": size[0], "target_length": size[-1], **cfg.processor}
        out = cls(**settings)
        if min(out.sample_rate, out.num_mel_bins, out.target_length, out.clips) <= 0 or out.clip_duration <= 0 \
                or out.std <= 0:
            raise ConfigError(f"towers.audio.processor: sample_rate, num_mel_bins, target_length, clips, "
                              f"clip_duration and std must be positive, got {dataclasses.asdict(out)}")
        if out.trim_db is not None and not out.trim_db > 0:
            raise ConfigError(f"towers.audio.processor.trim_db: expected a positive number of dB, got {out.trim_db}")
        return out


class AudioProcessor:
    """One recording (a path, its bytes, or a (waveform, sample_rate) pair) -> (clips, 1, bins, frames)."""

    def __init__(self, config: AudioProcessorConfig | None = None) -> None:
        self.config = config or AudioProcessorConfig()

    def __call__(self, item: Any) -> torch.Tensor:
        wave, rate, name = self._decode(item)
        wave, rate = self._checked(wave, rate, name)
        wave = wave.mean(0, keepdim=True)  # downmix
        cfg = self.config
        wave = resample(wave, rate, cfg.sample_rate)
        if cfg.trim_db is not None:
            wave = trim_silence(wave, cfg.sample_rate, cfg.trim_db)
        if cfg.loudness_dbfs is not None:
            wave = normalize_loudness(wave, cfg.loudness_dbfs)
        window = int(cfg.sample_rate * cfg.frame_length * 0.001)
        if wave.shape[-1] < window:
            raise AudioDecodeError(name, f"{wave.shape[-1] / cfg.sample_rate * 1000:.1f} ms long, shorter than one "
                                         f"{cfg.frame_length} ms frame", "empty_audio")
        shared = wave.clone()  # ImageBind's clips are views of one waveform, centred in place in turn
        return torch.stack([self._clip(shared[:, a:b]) for a, b in self.clip_bounds(wave.shape[-1])])

    def collate(self, rows: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(rows)

    def clip_bounds(self, samples: int) -> list[tuple[int, int]]:
        """ImageBind's clips: ``clips`` windows of ``clip_duration`` seconds starting at k / clips of the
        latest possible start (pytorchvideo's ConstantClipsPerVideoSampler: the last clip stops short of
        the end; all start at 0 when the recording is shorter than a clip), in exact fractions."""
        cfg, rate = self.config, self.config.sample_rate
        duration = Fraction(cfg.clip_duration)
        max_start = Fraction(max(samples / rate - cfg.clip_duration, 0))
        step = max_start / cfg.clips
        return [(int(step * i * rate), int((step * i + duration) * rate)) for i in range(cfg.clips)]

    def _clip(self, view: torch.Tensor) -> torch.Tensor:
        """(1, samples) -> (1, bins, target_length): mean removed (in place), filterbank, pad/cut, normalise."""
        cfg = self.config
        view -= view.mean()
        mel = fbank(view, cfg.sample_rate, cfg.num_mel_bins, cfg.frame_length, cfg.frame_shift,
                    htk_compat=True, use_energy=False, window_type="hanning").T
        if cfg.mean_norm:
            mel = mel - mel.mean(dim=1, keepdim=True)
        short = cfg.target_length - mel.shape[1]
        mel = F.pad(mel, (0, short)) if short > 0 else mel[:, :cfg.target_length]
        return ((mel - cfg.mean) / cfg.std).unsqueeze(0)

    @staticmethod
    def _decode(item: Any) -> tuple[torch.Tensor, float, str]:
        if isinstance(item, (str, os.PathLike, bytes, bytearray)):
            wave, rate = load_audio(item)
            return wave, rate, "<bytes>" if isinstance(item, (bytes, bytearray)) else os.fspath(item)
        if isinstance(item, tuple) and len(item) == 2:
            raw = item[0]
            wave = (raw.detach().to("cpu", torch.float32) if isinstance(raw, torch.Tensor)
                    else torch.as_tensor(np.asarray(raw), dtype=torch.float32))
            wave = wave.unsqueeze(0) if wave.ndim == 1 else wave
            if wave.ndim != 2:
                raise AudioDecodeError("<waveform>", f"shape {tuple(wave.shape)}: expected (samples,) or "
                                                     "(channels, samples)", "invalid_audio")
            return wave, item[1], "<waveform>"
        raise AudioDecodeError(f"<{type(item).__name__}>", "expected a path, bytes or a (waveform, sample_rate) "
                                                           "pair", "invalid_audio")

    def _checked(self, wave: torch.Tensor, rate: Any, name: str) -> tuple[torch.Tensor, int]:
        """Refuse what no clip can come from: a bad sample rate, no samples, NaN/inf, silence."""
        if isinstance(rate, float) and rate.is_integer():
            rate = int(rate)
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise AudioDecodeError(name, f"sample rate {rate!r}: expected a positive integer", "invalid_audio")
        if wave.shape[-1] == 0 or wave.shape[0] == 0:
            raise AudioDecodeError(name, "no samples", "empty_audio")
        if not torch.isfinite(wave).all():
            bad = int((~torch.isfinite(wave)).sum())
            raise AudioDecodeError(name, f"{bad} NaN or infinite samples", "invalid_audio")
        peak = float(wave.abs().max())
        if peak <= self.config.silence_threshold:
            raise AudioDecodeError(name, f"silent (peak {peak:.2g} <= silence_threshold "
                                         f"{self.config.silence_threshold:g})", "silent_audio")
        return wave, int(rate)


def _audio_processor(cfg: TowerConfig, files: Path | None) -> AudioProcessor:
    return AudioProcessor(AudioProcessorConfig.for_tower(cfg))


def check_audio_processor(cfg: TowerConfig, processor: Any) -> None:
    """Refuse a processor whose clips are not the tower's input size (mel bins x frames)."""
    pc, size = getattr(processor, "config", None), getattr(cfg, "input_size", None)
    if not isinstance(pc, AudioProcessorConfig) or size is None:
        return
    if (pc.num_mel_bins, pc.target_length) != tuple(size):
        raise ConfigError(f"the audio processor makes {pc.num_mel_bins} x {pc.target_length} clips, the audio "
                          f"tower (towers.audio.input_size) takes {size[0]} x {size[-1]}")


#: What libsndfile (through soundfile) decodes.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64")

def _build_cnn(cfg: TowerConfig, embed_dim: int) -> SpectrogramCNN:
    return SpectrogramCNN(cfg.in_channels, cfg.width, cfg.layers)


AUDIO = Modality(name="audio", config_class=AudioTowerConfig,
                 build_tower=tower_builder("audio", {"vit": lambda cfg, embed_dim: VisionTransformer(cfg, "audio"),
                                                     "cnn": _build_cnn}),
                 build_processor=_audio_processor, input_name="spectrograms", check_processor=check_audio_processor,
                 file_extensions=AUDIO_EXTENSIONS)
register_modality(AUDIO)
