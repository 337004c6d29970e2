"""tests/strict_skips.py: a skip fails the suite unless the test needs hardware CI lacks."""
import os
import subprocess
import sys
from pathlib import Path

import strict_skips

TESTS = Path(__file__).parent


def _pytest(folder: Path, **env) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "strict_skips", "-p", "no:cacheprovider",
                           "--continue-on-collection-errors", "--rootdir", str(folder), str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True)


def test_skips_fail_and_name_the_test_and_reason(tmp_path):
    (tmp_path / "test_a.py").write_text(
        "import pytest\n"
        "def test_runs():\n    assert True\n"
        "@pytest.mark.skipif(True, reason='needs the moon')\ndef test_marked():\n    pass\n"
        "def test_inside():\n    pytest.skip('no dataset')\n"
        "@pytest.mark.xfail(reason='known')\ndef test_xfail():\n    assert False\n")
    (tmp_path / "test_b.py").write_text("import pytest\npytest.importorskip('no_such_module_here')\n")
    run = _pytest(tmp_path, TETHER_ALLOW_SKIPS="0")
    assert run.returncode == 1, run.stdout
    out = run.stdout
    assert "test_a.py::test_marked was skipped (needs the moon)" in out
    assert "test_a.py::test_inside was skipped (no dataset)" in out
    assert "test_b.py was skipped (could not import 'no_such_module_here'" in out
    # a skip in setup (a mark, a fixture) or collection (module level) reports as an error
    assert "1 failed, 1 passed, 1 xfailed, 2 errors" in out
    relaxed = _pytest(tmp_path, TETHER_ALLOW_SKIPS="1")
    assert relaxed.returncode == 0 and "1 passed, 3 skipped, 1 xfailed" in relaxed.stdout, relaxed.stdout


def test_listed_tests_may_skip(monkeypatch):
    monkeypatch.delenv("TETHER_ALLOW_SKIPS", raising=False)
    monkeypatch.setattr(strict_skips, "ALLOWED_SKIPS", {"tests/test_gpu.py::test_on_cuda": "a CUDA GPU"})
    assert strict_skips.allowed("tests/test_gpu.py::test_on_cuda[fp16]")
    assert not strict_skips.allowed("tests/test_gpu.py::test_on_cpu")
