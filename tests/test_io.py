"""tether.io: every write is the whole new file or leaves the old one, and leaves no temporary behind."""
import json
import os
import threading

import pytest
import torch
from safetensors.torch import load_file

import tether.io
from tether.io import (PendingFile, atomic_directory, atomic_file, atomic_save_safetensors, atomic_write_bytes,
                       atomic_write_json, atomic_write_text)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_each_writer_writes_its_content_and_leaves_no_temporary(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "sub" / "b.txt", "é\r\nline\n")          # parents made, no newline translation
    atomic_write_json(tmp_path / "c.json", {"k": [1, 2]}, indent=None)
    atomic_save_safetensors({"w": torch.arange(6.0).view(2, 3).t()}, tmp_path / "d.safetensors", {"format": "pt"})
    with atomic_file(tmp_path / "e.pt") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".e.pt.") and tmp.suffix == ".tmp"   # no reader globs it
        torch.save({"x": 1}, tmp)
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "b.txt").read_bytes() == "é\r\nline\n".encode()
    assert (tmp_path / "c.json").read_text() == '{"k": [1, 2]}\n'
    assert torch.equal(load_file(tmp_path / "d.safetensors")["w"], torch.arange(6.0).view(2, 3).t())
    assert torch.load(tmp_path / "e.pt") == {"x": 1}
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "sub") == []
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o666 & ~umask   # not mkstemp's 0600


def test_an_error_mid_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "result.json"
    atomic_write_json(target, {"old": True})
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_file(target) as tmp:
            tmp.write_text('{"new": tr')                                     # half written, then the writer fails
            raise RuntimeError("disk full")
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})                         # fails before anything is written
    assert json.loads(target.read_text()) == {"old": True}
    assert _leftovers(tmp_path) == []


def test_pending_file_commits_or_discards(tmp_path):
    kept, dropped = PendingFile(tmp_path / "kept.tar"), PendingFile(tmp_path / "dropped.tar")
    kept.tmp.write_bytes(b"shard")
    dropped.tmp.write_bytes(b"half")
    assert not (tmp_path / "kept.tar").exists()                              # invisible until committed
    kept.commit()
    dropped.discard()
    assert (tmp_path / "kept.tar").read_bytes() == b"shard" and not (tmp_path / "dropped.tar").exists()
    assert _leftovers(tmp_path) == []


def test_concurrent_writers_of_one_path_never_share_a_temporary(tmp_path):
    target, barrier, seen, errors = tmp_path / "out.bin", threading.Barrier(8), [], []

    def write(i):
        try:
            with atomic_file(target) as tmp:
                seen.append(tmp)
                tmp.write_bytes(bytes([i]) * 1000)
                barrier.wait(timeout=10)                                     # all eight temporaries exist at once
                assert tmp.read_bytes() == bytes([i]) * 1000                  # nobody overwrote this one
        except Exception as err:                                           # surfaced below, not lost in a thread
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(seen)) == 8
    data = target.read_bytes()
    assert len(data) == 1000 and len(set(data)) == 1                         # exactly one writer's whole file
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "rename-aside"])
def test_directory_is_replaced_whole(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(tether.io, "_exchange", lambda a, b: False)      # the path for other systems
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("1")
        (tmp / "old_only.txt").write_text("x")
    with atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("2")
        (tmp / "nested").mkdir()
        (tmp / "nested" / "w.bin").write_bytes(b"w")
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == ["config.json", "nested", "nested/w.bin"]
    assert (target / "config.json").read_text() == "2"                       # no file of the old version survives
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target) as tmp:
            (tmp / "config.json").write_text("3")
            raise KeyboardInterrupt
    assert (target / "config.json").read_text() == "2"
    assert _leftovers(tmp_path) == []


def test_directory_replace_refuses_a_file(tmp_path):
    (tmp_path / "model").write_text("not a directory")
    with pytest.raises(NotADirectoryError, match="model"):
        with atomic_directory(tmp_path / "model") as tmp:
            (tmp / "config.json").write_text("1")
    assert (tmp_path / "model").read_text() == "not a directory" and _leftovers(tmp_path) == []
