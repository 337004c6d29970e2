"""Crashes and full disks: outputs are the previous complete version or absent, never half of one.

SIGKILL comes at a fixed point, not after a sleep: ``TETHER_KILL_BEFORE_REPLACE=<file name pattern>``
makes tether.io kill its own process when a matching output is complete at its temporary name,
just before the rename that publishes it (see tether/io.py). A full disk is ``ENOSPC`` from the
fsync that every atomic write does before its rename (where delayed allocation reports it), and
a real refusal by the kernel is a file-size limit (``RLIMIT_FSIZE``) on a child process.
"""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import tether
import tether.io
from tether.cli.main import main
from tether.embedding import read_embeddings
from tether.errors import CheckpointError, DataError, WriteError
from tether.io import KILL_HOOK

pytestmark = pytest.mark.usefixtures("one_thread")


def tether_cli(*args: str, kill_at: str | None = None, **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    env.pop(KILL_HOOK, None)
    if kill_at:
        env[KILL_HOOK] = kill_at
    return subprocess.run([sys.executable, "-m", "tether.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=600, **popen)


def python(code: str, kill_at: str) -> subprocess.CompletedProcess:
    env = {**os.environ, KILL_HOOK: kill_at, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every visible file under ``folder`` (hidden temporaries excluded) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (30, 30), (40 * i, 90, 200 - 20 * i)).save(folder / f"img{i}.png")
    return folder


# ---------------------------------------------------------------- SIGKILL
def test_sigkill_during_embed_leaves_the_previous_output(tiny_checkpoint, tmp_path):
    out = tmp_path / "emb"
    assert main(["embed", "--model", str(tiny_checkpoint), "--images", str(images(tmp_path / "a", 3)),
                 "--out", str(out)]) == 0
    before = snapshot(out)
    more = str(images(tmp_path / "b", 5))
    killed = tether_cli("embed", "--model", str(tiny_checkpoint), "--images", more, "--out", str(out),
                        kill_at="images.safetensors")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert snapshot(out) == before                          # the matrix and its index: both the old ones
    vectors, ids = read_embeddings(out, "images")
    assert vectors.shape == (3, 64) and len(ids) == 3
    assert leftovers(out) and all(name.endswith(".tmp") for name in leftovers(out))

    # killed between the two files: a new matrix beside the old index, which the reader refuses
    killed = tether_cli("embed", "--model", str(tiny_checkpoint), "--images", more, "--out", str(out),
                        kill_at="images.json")
    assert killed.returncode == -signal.SIGKILL
    assert load_file(out / "images.safetensors")["embeddings"].shape == (5, 64)
    with pytest.raises(DataError, match="images.json does not describe .*images.safetensors"):
        read_embeddings(out, "images")
    assert main(["embed", "--model", str(tiny_checkpoint), "--images", more, "--out", str(out)]) == 0
    assert read_embeddings(out, "images")[0].shape == (5, 64)   # a rerun repairs it


def test_sigkill_during_a_first_embed_leaves_no_output(tiny_checkpoint, tmp_path):
    out = tmp_path / "emb"
    killed = tether_cli("embed", "--model", str(tiny_checkpoint), "--images", str(images(tmp_path / "a", 2)),
                        "--out", str(out), kill_at="images.safetensors")
    assert killed.returncode == -signal.SIGKILL
    assert snapshot(out) == {}                              # nothing a reader would pick up
    with pytest.raises(FileNotFoundError):
        read_embeddings(out, "images")


def test_sigkill_during_eval_leaves_each_record_old_or_new(tiny_checkpoint, tmp_path):
    from tether.metrics import merge_results, read_result
    out = tmp_path / "results"
    args = ["eval", "--model", str(tiny_checkpoint), "--model-name", "tiny", "--dataset", "digits",
            "--task", "zeroshot", "--task", "retrieval", "--out", str(out)]
    assert main(args) == 0
    record = out / "digits__tiny__retrieval.json"
    old = json.loads(record.read_text())
    record.write_text(json.dumps({**old, "pretrained": "previous run"}))   # tell the old record from a new one
    before = snapshot(out)
    killed = tether_cli(*args, kill_at="*__retrieval.json")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    after = snapshot(out)
    assert after["digits__tiny__retrieval.json"] == before["digits__tiny__retrieval.json"]   # the old record
    assert read_result(out / "digits__tiny__zeroshot.json")["task"] == "zeroshot_classification"
    assert len(merge_results([out])) == 2                   # the leftover temporary is not a result
    assert any(name.endswith(".tmp") for name in leftovers(out))


SAVE = """
import torch, tether
model = tether.load({src!r})
with torch.no_grad():
    model.logit_scale.fill_(1.5)
tether.save(model, {dst!r})
"""


@pytest.mark.parametrize("kill_at", ["model.safetensors", "ck"])   # mid-save / just before the swap
def test_sigkill_during_save_leaves_the_previous_checkpoint(tiny_checkpoint, tmp_path, kill_at):
    dst = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, dst)
    before = snapshot(dst)
    killed = python(SAVE.format(src=str(tiny_checkpoint), dst=str(dst)), kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert snapshot(dst) == before
    assert float(tether.load(dst).logit_scale.detach()) != 1.5
    assert leftovers(tmp_path)                              # the unfinished one, hidden, beside it


def test_sigkill_during_a_first_save_leaves_no_checkpoint(tiny_checkpoint, tmp_path):
    dst = tmp_path / "ck"
    killed = python(SAVE.format(src=str(tiny_checkpoint), dst=str(dst)), "ck")
    assert killed.returncode == -signal.SIGKILL
    assert not dst.exists()
    with pytest.raises(FileNotFoundError):
        tether.load(dst)


def test_a_half_written_weights_file_is_never_loaded(tiny_checkpoint, tmp_path):
    """What a crash mid-copy (outside tether) leaves: the loader refuses it, naming the file."""
    dst = shutil.copytree(tiny_checkpoint, tmp_path / "ck")
    data = (dst / "model.safetensors").read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 100):
        (dst / "model.safetensors").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"model.safetensors: truncated"):
            tether.load(dst)


# ---------------------------------------------------------------- full disk
@pytest.fixture
def disk_full_for(monkeypatch):
    """``disk_full_for(pattern)``: fsync of files whose name matches raises ENOSPC."""
    import fnmatch
    real = tether.io._fsync_path

    def install(pattern: str) -> None:
        def fsync(path, directory=False):
            if not directory and fnmatch.fnmatch(Path(path).name, f".{pattern}.*.tmp"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(path, directory)
        monkeypatch.setattr(tether.io, "_fsync_path", fsync)
    return install


def test_full_disk_during_embed_is_one_line_and_keeps_the_old_output(tiny_checkpoint, tmp_path, capsys,
                                                                     disk_full_for):
    out = tmp_path / "emb"
    assert main(["embed", "--model", str(tiny_checkpoint), "--images", str(images(tmp_path / "a", 3)),
                 "--out", str(out)]) == 0
    before = snapshot(out)
    capsys.readouterr()
    disk_full_for("images.safetensors")
    assert main(["embed", "--model", str(tiny_checkpoint), "--images", str(images(tmp_path / "b", 5)),
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"tether embed: error: {out / 'images.safetensors'}: cannot write (no space left on the device); "
                   "any earlier version of it is unchanged")
    assert snapshot(out) == before and leftovers(out) == []


def test_full_disk_during_eval_names_the_record(tiny_checkpoint, tmp_path, capsys, disk_full_for):
    disk_full_for("*__zeroshot.json")
    out = tmp_path / "results"
    assert main(["eval", "--model", str(tiny_checkpoint), "--dataset", "digits", "--task", "zeroshot",
                 "--model-name", "tiny", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{out / 'digits__tiny__zeroshot.json'}: cannot write (no space left on the device)" in err
    assert not (out / "digits__tiny__zeroshot.json").exists() and leftovers(out) == []


def test_full_disk_during_save_raises_a_write_error_and_keeps_the_checkpoint(tiny_model, tiny_checkpoint, tmp_path,
                                                                             disk_full_for):
    dst = shutil.copytree(tiny_checkpoint, tmp_path / "ck")
    before = snapshot(dst)
    disk_full_for("model.safetensors")
    with pytest.raises(WriteError) as info:
        tether.save(tiny_model, dst)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert str(info.value) == f"{dst}: cannot write (no space left on the device); any earlier version of it is unchanged"
    assert snapshot(dst) == before and leftovers(tmp_path) == []


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file-size limits")
def test_the_kernel_refusing_a_write_is_one_line_from_the_safetensors_writer(tiny_checkpoint, tmp_path):
    """A real refusal (not a patched function) inside safetensors' own writer: RLIMIT_FSIZE gives EFBIG."""
    import resource
    dst = tmp_path / "converted"
    size = (tiny_checkpoint / "model.safetensors").stat().st_size

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # EFBIG instead of death
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    proc = tether_cli("convert", str(tiny_checkpoint), str(dst), "--to", "tether", preexec_fn=limit)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"tether convert: error: {dst}: cannot write (File too large); "
                                                "any earlier version of it is unchanged"]
    assert not dst.exists() and leftovers(tmp_path) == []
