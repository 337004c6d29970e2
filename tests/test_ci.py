"""CI runs README's test command, and that command installs what the tests ask for."""
import re
import subprocess
from pathlib import Path

import conftest

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    command = subprocess.run([str(ROOT / ".ci" / "run"), "--print"], capture_output=True, text=True,
                             check=True).stdout.strip()
    readme = (ROOT / "README.md").read_text()
    assert f"**Run the tests:**\n\n```bash\n{command}\n```" in readme
    assert command.startswith("scripts/install-test-deps.sh && ") and command.endswith("python -m pytest -q")
    last = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert last == command  # what .ci/run executes is the command it checks against README


def test_the_install_script_installs_every_debian_package_the_tests_name():
    script = (ROOT / "scripts" / "install-test-deps.sh").read_text()
    packages = set(re.findall(r"^  ([a-z0-9][a-z0-9.+-]+)\s", script, re.M))
    named = set(re.findall(r"# Debian: ([a-z0-9.+-]+)", Path(conftest.__file__).read_text()))
    assert named == {"dataset-fashion-mnist", "tuxpaint-stamps-default"}
    assert named | {"g++", "default-jre-headless"} <= packages, packages
    assert "set -euo pipefail" in script and "|| " not in script  # a failed install stops it, never warns
