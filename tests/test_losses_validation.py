"""tether.losses input validation: shape, rank, dtype, NaN/inf and argument errors name what
is wrong."""
from __future__ import annotations

import pytest
import torch

from tether.losses import (clip_loss, cosine_distill_loss, infonce_rows, l2_distill_loss, siglip_block,
                           siglip_loss, similarity_kl_loss)
from losses_common import unit

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors (tests/conftest.py)


def test_shape_errors_name_both_shapes():
    x, y = unit(4, 3), unit(5, 3)
    with pytest.raises(ValueError, match=r"image_embeds has shape \(4, 3\) but text_embeds has shape \(5, 3\)"):
        clip_loss(x, y, 1.0)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 6\)"):
        siglip_loss(x, unit(4, 6), 1.0, 0.0, chunk_size=2)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5, 3\)"):
        siglip_block(x, y, 1.0, 0.0, positives=True)
    siglip_block(x, y, 1.0, 0.0, positives=False)                   # negatives: any row counts
    with pytest.raises(ValueError, match=r"student has shape \(4, 3\) but teacher has shape \(4, 2\)"):
        cosine_distill_loss(x, unit(4, 2))
    with pytest.raises(ValueError, match=r"student_a has shape \(4, 3\) but teacher_a has shape \(5, 3\)"):
        similarity_kl_loss(x, x, y, y, 1.0)
    with pytest.raises(ValueError, match=r"query has shape \(4, 3\) but keys has shape \(5, 2\)"):
        infonce_rows(x, unit(5, 2), 1.0, 0)


def test_rank_dtype_nan_and_argument_errors():
    x = unit(4, 3)
    with pytest.raises(ValueError, match=r"image_embeds must be 2-D.*\(4, 3, 1\)"):
        clip_loss(x[..., None], x, 1.0)
    with pytest.raises(ValueError, match=r"text_embeds must be 2-D.*\(3,\)"):
        siglip_loss(x, x[0], 1.0, 0.0)
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="text_embeds contains NaN"):
        clip_loss(x, bad, 1.0, chunk_size=2)
    with pytest.raises(ValueError, match="teacher contains NaN"):
        l2_distill_loss(x, bad)
    bad[2, 1] = float("inf")
    with pytest.raises(ValueError, match="image_embeds contains inf"):
        siglip_loss(bad, x, 1.0, 0.0)
    with pytest.raises(ValueError, match="scale contains NaN"):
        clip_loss(x, x, torch.tensor(float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="logit_bias must be a scalar"):
        siglip_loss(x, x, 1.0, torch.zeros(2, dtype=torch.float64))
    with pytest.raises(TypeError, match="float32"):
        clip_loss(x, x.float(), 1.0)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        clip_loss(x, x, 1.0, chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size must be None"):
        clip_loss(x, x, 1.0, chunk_size="big")
    with pytest.raises(ValueError, match=r"targets must index the 4 keys"):
        infonce_rows(x, x, 1.0, torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match=r"offset 2 with 4 queries"):
        infonce_rows(x, x, 1.0, 2)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        similarity_kl_loss(x, x, x, x, 0.0)
    with pytest.raises(TypeError, match="positives must be a bool"):
        siglip_block(x, x, 1.0, 0.0, positives=1)
