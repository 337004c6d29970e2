"""tether's error types: one hierarchy, so callers (the CLI first) can tell a user's mistake from a bug.

Every error tether raises about its *input* -- a file, a config key, a command-line option, a
dataset row -- is a :class:`TetherError` whose message is one line naming the file, key or value,
what was expected and what was found. The CLI prints exactly that line; any other exception is a
bug in tether and keeps its traceback. Each subclass also derives from the built-in type callers
caught before this hierarchy existed (``ValueError``, ``KeyError``, ``RuntimeError``, ``OSError``),
so ``except ValueError`` keeps working.

    TetherError
      ConfigError            a model/training config or an option value: unknown key, wrong type, bad value
        UnknownNameError     a name that is not among the known ones (model, template set, tower); also KeyError
      CheckpointError        weights or a checkpoint directory that cannot be read or do not fit the model
      TokenizerError         a tokenizer file that cannot be read, or a tokenizer that does not fit the model
      InputError             a raw input or command-line argument that cannot be used
        ImageDecodeError     an image file that cannot be decoded (tether.preprocess)
        AudioDecodeError     an audio file that cannot be used: missing, undecodable, empty, silent, NaN
        MissingProcessorError  raw inputs for a modality the model has no processor for; also RuntimeError
      DataError              a dataset, manifest, shard or result file that cannot be used
      WriteError             an output that could not be written (disk full, read-only, ...); also OSError

This module imports nothing, so every module may use it.
"""
from __future__ import annotations

import errno
import os

__all__ = ["AudioDecodeError", "CheckpointError", "ConfigError", "DataError", "ImageDecodeError", "InputError", "MissingProcessorError",
           "TetherError", "TokenizerError", "UnknownNameError", "WriteError"]


class TetherError(Exception):
    """A problem with what tether was given (not a bug in tether): the message is one readable line."""

    def __str__(self) -> str:
        # KeyError would print repr(message) ("'no model config named ...'"); OSError "[Errno 28] ...".
        message = getattr(self, "message", None)
        if message is not None:
            return message
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class ConfigError(TetherError, ValueError):
    """A configuration value is missing, unknown or has the wrong type."""


class UnknownNameError(ConfigError, KeyError):
    """A name (model config, template set, tower, packaged model) that is not among the known ones."""


class CheckpointError(TetherError, ValueError):
    """A checkpoint cannot be read, does not fit the model, or is not in a layout tether knows."""


class TokenizerError(TetherError, ValueError):
    """A tokenizer's files cannot be read, or the tokenizer does not fit the model's text tower."""


class InputError(TetherError, ValueError):
    """A raw input (an image, a text) or a command-line argument that cannot be used."""


class ImageDecodeError(InputError):
    """An image could not be read or decoded; ``source`` names it, ``reason`` says why."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"cannot load image {source!r}: {reason}")


class AudioDecodeError(InputError):
    """An audio input that cannot be embedded; ``source`` names it, ``reason`` says why and
    ``skip_reason`` is what jobs count it as (missing_audio, corrupt_audio, empty_audio,
    silent_audio, invalid_audio)."""

    def __init__(self, source: str, reason: str, skip_reason: str = "corrupt_audio") -> None:
        self.source = source
        self.reason = reason
        self.skip_reason = skip_reason
        super().__init__(f"cannot use audio {source!r}: {reason}")


class MissingProcessorError(InputError, RuntimeError):
    """Raw inputs of a modality for which the model has no processor (for text: no tokenizer)."""

    @classmethod
    def for_modality(cls, modality: str, model_name: str | None = None) -> "MissingProcessorError":
        """The error for ``modality``, saying how to get a processor; ``model_name`` prefixes the message."""
        what = "text processor (tokenizer)" if modality == "text" else f"{modality} processor"
        return cls(f"{model_name + ': ' if model_name else ''}this model has no {what}, so it cannot embed raw "
                   f"{modality} inputs: train one (`tether train` trains and saves a tokenizer with the model) or "
                   f"attach one (model.processors[{modality!r}] = ..., e.g. model.tokenizer = "
                   "tether.tokenizer.Tokenizer.load(dir))")


class DataError(TetherError, ValueError):
    """A dataset, manifest, shard index or result file that cannot be used as it is."""


class WriteError(TetherError, OSError):
    """An output could not be written (``ENOSPC``, read-only file system, ...); the earlier output is kept."""

    def __init__(self, path: str | os.PathLike, cause: OSError) -> None:
        reason = cause.strerror or str(cause)
        if cause.errno == errno.ENOSPC:
            reason = "no space left on the device"
        super().__init__(cause.errno, reason, os.fspath(path))
        self.message = f"{os.fspath(path)}: cannot write ({reason}); any earlier version of it is unchanged"
