"""Atomic file writes: the one implementation every tether writer uses.

A result file (weights, embeddings, a checkpoint, metrics, an index, a plot) is either the
complete previous version or the complete new one, never half of either, even if the process
is killed or the machine loses power mid-write. How:

- write to a temporary name in the same folder (``os.replace`` is only atomic within one file
  system), made unique by ``mkstemp``/``mkdtemp`` so concurrent writers of one path never share a
  temporary;
- ``fsync`` the data before the rename (else a crash can leave the new name pointing at a file
  whose blocks were never written), ``os.replace`` it over the target, then ``fsync`` the folder so
  the rename itself survives a crash;
- on any error the temporary is removed and the target is left as it was.

Temporaries are hidden and end in ``.tmp`` (``.plot.png.k2j9.tmp``), so a leftover from a killed
process never matches a reader's ``*.tar`` / ``*.json`` / ``*.safetensors`` glob. Writers that pick
a format from the extension must be told it (``savefig(tmp, format="png")``).

A write the file system refuses (no space left, quota, file too large, read-only) raises
:class:`tether.errors.WriteError` naming the output path, with the earlier version left in place.
Fault injection for tests: with ``TETHER_KILL_BEFORE_REPLACE=<file name pattern>`` in its
environment a process SIGKILLs itself when a matching output is complete at its temporary name,
just before the rename that would publish it (the last moment a crash can hit).
This module imports only :mod:`tether.errors`, so any module may use it.
"""
from __future__ import annotations

import errno
import fnmatch
import json
import os
import re
import shutil
import signal
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping

from .errors import WriteError

__all__ = ["PendingFile", "atomic_file", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "atomic_save_safetensors", "atomic_directory"]


@lru_cache(maxsize=1)
def _umask() -> int:
    """The process's umask, read once (setting it to read it is not thread-safe, so not per write)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _default_mode(directory: bool = False) -> int:
    """What ``open(path, "w")`` / ``mkdir`` would give (mkstemp and mkdtemp make 0600 / 0700)."""
    return (0o777 if directory else 0o666) & ~_umask()


# A folder that cannot be fsynced (no read permission, a file system without directory fsync)
# only loses the rename's durability on power loss, never atomicity: not worth failing a write.
_NO_DIRECTORY_FSYNC = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES, errno.EPERM, errno.EISDIR}


# errno values that mean "the file system will not take this output" rather than a bug.
WRITE_ERRNOS = {getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EIO") if hasattr(errno, name)}
KILL_HOOK = "TETHER_KILL_BEFORE_REPLACE"


def _refusal(path: Path, err: OSError) -> WriteError | None:
    """``err`` as a :class:`WriteError` naming ``path`` if the file system refused the write, else None."""
    return WriteError(path, err) if err.errno in WRITE_ERRNOS else None


def _kill_hook(path: Path) -> None:
    """Tests' fault injection (see the module docstring): die here if ``path`` matches the pattern."""
    pattern = os.environ.get(KILL_HOOK)
    if pattern and fnmatch.fnmatchcase(path.name, pattern):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def _fsync_path(path: Path, directory: bool = False) -> None:
    if directory and os.name == "nt":
        return                                            # Windows cannot open a folder for fsync
    flags = os.O_RDONLY if directory or os.name != "nt" else os.O_RDWR
    try:
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        if not directory or err.errno not in _NO_DIRECTORY_FSYNC:
            raise


class PendingFile:
    """A temporary file beside ``path``: :meth:`commit` makes it ``path``, :meth:`discard` removes it.

    For writers that outlive one ``with`` block (a tar shard filled over many calls); otherwise
    use :func:`atomic_file`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                   suffix=".tmp")
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> Path:
        try:
            _fsync_path(self.tmp)
            os.chmod(self.tmp, _default_mode())
            _kill_hook(self.path)
            os.replace(self.tmp, self.path)
        except OSError as err:
            self.discard()
            refusal = _refusal(self.path, err)
            if refusal is None:
                raise
            raise refusal from err
        except BaseException:
            self.discard()
            raise
        _fsync_path(self.path.parent, directory=True)
        return self.path

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a unique temporary path beside ``path``; when the block ends cleanly it becomes ``path``.

    For writers that take a file name: ``with atomic_file(p) as tmp: torch.save(obj, tmp)``.
    """
    pending = PendingFile(path)
    try:
        yield pending.tmp
    except OSError as err:
        pending.discard()
        refusal = _refusal(Path(path), err)
        if refusal is None:
            raise
        raise refusal from err
    except BaseException:
        pending.discard()
        raise
    pending.commit()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` as is (no newline translation)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 2, ensure_ascii: bool = True) -> Path:
    """``obj`` as JSON with a final newline."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=ensure_ascii) + "\n")


def atomic_save_safetensors(tensors: Mapping[str, Any], path: str | Path,
                            metadata: Mapping[str, str] | None = None) -> Path:
    """A .safetensors file of ``tensors`` (detached, contiguous, on the CPU)."""
    from safetensors.torch import save_file   # torch is only imported by writers that need it

    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_file(path) as tmp:
        try:
            save_file(flat, str(tmp), metadata=dict(metadata) if metadata is not None else None)
        except Exception as err:  # safetensors' own error type, even for an OS error
            found = re.search(r"\(os error (\d+)\)", str(err))
            if not found:
                raise
            code = int(found.group(1))
            raise OSError(code, os.strerror(code), str(tmp)) from err
    return Path(path)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync_path(Path(folder) / name)
        _fsync_path(Path(folder), directory=True)


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; when the block ends cleanly it replaces ``path`` whole.

    Readers see the old directory or the complete new one, never a mix of their files. Where
    the OS can swap two names in one step (Linux ``renameat2(RENAME_EXCHANGE)``) there is no
    moment without ``path``; elsewhere the old directory is renamed aside first, so a crash
    between the two renames leaves the new one complete at its temporary name and no ``path``.
    An exception leaves ``path`` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, _default_mode(directory=True))
        _fsync_tree(tmp)
        _kill_hook(path)
        _replace_directory(tmp, path)
    except OSError as err:
        refusal = _refusal(path, err)
        if refusal is None:
            raise
        raise refusal from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)     # after a swap: the old directory
    _fsync_path(path.parent, directory=True)


def _replace_directory(new: Path, path: Path) -> None:
    """Put directory ``new`` at ``path``; ``new`` ends up absent or holding the old directory."""
    if not path.exists():
        os.replace(new, path)
        return
    if not path.is_dir() or path.is_symlink():
        raise NotADirectoryError(f"{path}: expected a directory to replace, found a file")
    if _exchange(new, path):
        return
    aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
    os.replace(path, aside)                        # rename onto an empty directory: allowed on POSIX
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(aside, path)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two names atomically (Linux >= 3.15, glibc >= 2.28); False where that is not available."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False                                   # e.g. a file system without exchange: fall back
