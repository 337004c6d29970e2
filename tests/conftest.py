"""Fixtures that several test files share: one torch thread, the offline datasets, a tiny checkpoint.

* ``one_thread`` -- tiny tensors: thread hand-offs cost more than the maths (a lot on a busy
  2-core box). Opt in per file with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
* ``fashion_mnist`` / ``tuxpaint_stamps`` -- the Debian dataset packages' folders; a test or
  fixture that asks for one skips (a failure, see below) where the package is not installed.
* ``tiny_checkpoint`` / ``tiny_model`` -- tiny-vit-28 (seed 0) with a BPE tokenizer trained on
  :data:`TINY_CORPUS`, saved once per session in tether's format; ``tiny_model`` loads a fresh
  copy per test module (in eval mode), so a module may change its copy.

Every skip fails the suite unless the test is in ``tests/strict_skips.py`` ALLOWED_SKIPS (tests that
need hardware CI lacks); README's test command installs what every other test needs.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from strict_skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401 (hooks)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")      # Debian: dataset-fashion-mnist
TUXPAINT_STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")           # Debian: tuxpaint-stamps-default


@pytest.fixture(scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def fashion_mnist() -> Path:
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"needs Debian's dataset-fashion-mnist ({FASHION_MNIST_DIR})")
    return FASHION_MNIST_DIR


@pytest.fixture(scope="session")
def tuxpaint_stamps() -> Path:
    if not TUXPAINT_STAMPS_DIR.is_dir():
        pytest.skip(f"needs Debian's tuxpaint-stamps-default ({TUXPAINT_STAMPS_DIR})")
    return TUXPAINT_STAMPS_DIR


def _tiny_corpus() -> list[str]:
    from tether.data import DIGIT_CLASSES, DIGIT_TEMPLATES, format_caption
    things = [f"a {c} {t}" for c in ("red", "green", "blue", "small", "large")
              for t in ("cat", "dog", "shirt", "shoe", "bag", "coat", "sneaker", "trouser")]
    return ([f"a photo of {t}" for t in things] + things) * 3 + \
        [format_caption(t, c) for t in DIGIT_TEMPLATES for c in DIGIT_CLASSES] * 3


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A saved tiny-vit-28 with a 600-token BPE over things, colours and the digits' prompts."""
    import tether
    from tether.tokenizer import Tokenizer

    torch.manual_seed(0)
    model = tether.create_model("tiny-vit-28")
    text = model.config.towers["text"]
    tokenizer = Tokenizer.train_bpe(_tiny_corpus(), vocab_size=600, context_length=text.context_length)
    assert tokenizer.vocab_size <= text.vocab_size
    model.tokenizer = tokenizer
    return tether.save(model, tmp_path_factory.mktemp("tiny_checkpoint") / "tiny")


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    import tether
    return tether.load(tiny_checkpoint).eval()
