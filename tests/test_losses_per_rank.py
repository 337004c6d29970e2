"""tether.losses: the building blocks of the distributed losses (infonce_rows per rank,
siglip_block per pair of ranks) add up to the single-process losses; empty blocks for
uneven ranks."""
from __future__ import annotations

import pytest
import torch

from tether.losses import clip_loss, infonce_rows, siglip_block, siglip_loss
from losses_common import assert_grads_close, loss_and_grads, unit

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors (tests/conftest.py)


@pytest.mark.parametrize("chunk", [None, 3])
def test_clip_loss_from_infonce_rows_per_rank(chunk):
    """World of 4 ranks, 5 rows each: every rank's local rows against the gathered columns
    (offset = rank * n) add up to the single-process clip_loss, loss and gradients."""
    world, n, d = 4, 5, 6
    x, y = unit(world * n, d, seed=41), unit(world * n, d, seed=42)
    t = torch.tensor(9.0, dtype=torch.float64)

    def distributed(a, b, s):
        total = 0
        for rank in range(world):
            rows = slice(rank * n, (rank + 1) * n)
            i2t = infonce_rows(a[rows], b, s, rank * n, chunk_size=chunk)
            t2i = infonce_rows(b[rows], a, s, rank * n, chunk_size=chunk)
            total = total + (i2t.sum() + t2i.sum()) / (2 * world * n)
        return total

    assert_grads_close(loss_and_grads(distributed, x, y, t), loss_and_grads(clip_loss, x, y, t), 1e-12)


@pytest.mark.parametrize("chunk", [None, 2])
def test_siglip_loss_from_blocks_per_rank(chunk):
    world, n, d = 3, 4, 5
    x, y = unit(world * n, d, seed=43), unit(world * n, d, seed=44)
    t, b = torch.tensor(10.0, dtype=torch.float64), torch.tensor(-5.0, dtype=torch.float64)

    def ring(a, c, s, o):
        total = 0
        for rank in range(world):
            mine = slice(rank * n, (rank + 1) * n)
            total = total + siglip_block(a[mine], c[mine], s, o, positives=True, chunk_size=chunk)
            for other in range(world):
                if other != rank:
                    theirs = slice(other * n, (other + 1) * n)
                    total = total + siglip_block(a[mine], c[theirs], s, o, positives=False, chunk_size=chunk)
        return total / (world * n)

    assert_grads_close(loss_and_grads(ring, x, y, t, b), loss_and_grads(siglip_loss, x, y, t, b), 1e-12)


def test_empty_blocks_for_uneven_ranks():
    x, y = unit(0, 4), unit(5, 4)
    for chunk in (None, 2):
        assert float(siglip_block(x, y, 2.0, -1.0, positives=False, chunk_size=chunk)) == 0.0
        assert float(siglip_block(y, x, 2.0, -1.0, positives=False, chunk_size=chunk)) == 0.0
        assert infonce_rows(x, y, 2.0, 0, chunk_size=chunk).shape == (0,)
    with pytest.raises(ValueError, match="image_embeds is empty"):
        clip_loss(x, x, 1.0)
