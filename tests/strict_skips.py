"""A skipped test is a failed test, except where it needs hardware the machine lacks.

README's test command installs everything the suite needs (scripts/install-test-deps.sh), so
a skip means a missing dependency, a deleted fixture or a broken install, and a suite that
skips proves less than it claims. This plugin (loaded by tests/conftest.py) turns every skip
into a failure that names the test and the skip's reason, unless the test is listed in
:data:`ALLOWED_SKIPS`: the one place for tests that need hardware CI does not have.
``TETHER_ALLOW_SKIPS=1`` restores plain skips for a partial local install.
"""
from __future__ import annotations

import os

import pytest

# test node id (as pytest prints it, without parameters) -> the hardware it needs
ALLOWED_SKIPS: dict[str, str] = {}


def allowed(nodeid: str) -> bool:
    return os.environ.get("TETHER_ALLOW_SKIPS") == "1" or nodeid.split("[", 1)[0] in ALLOWED_SKIPS


def _reason(report) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


def _fail(report, what: str) -> None:
    report.outcome = "failed"
    report.longrepr = (f"{what} was skipped ({_reason(report)}); skips fail this suite: install what it needs "
                       "(scripts/install-test-deps.sh), or list the test in tests/strict_skips.py ALLOWED_SKIPS "
                       "if it needs hardware CI lacks (TETHER_ALLOW_SKIPS=1 for a partial local install)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.skipped and not hasattr(report, "wasxfail") and not allowed(item.nodeid):
        _fail(report, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    report = (yield).get_result()
    if report.skipped and not allowed(collector.nodeid):  # a module-level importorskip / skip
        _fail(report, collector.nodeid)
