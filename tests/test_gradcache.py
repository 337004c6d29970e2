"""The gradient cache gives the gradients of one full-batch step (up to float32 rounding)."""
import pytest
import torch
import torch.nn.functional as F

from tether.models import AlignedModel, get_model_config
from tether.train.gradcache import contrastive_step

from tolerances import assert_within_rounding


def naive_clip_loss(img, txt, scale, bias=None):
    logits = scale * img @ txt.T
    target = torch.arange(img.shape[0])
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def naive_siglip_loss(img, txt, scale, bias):
    logits = scale * img @ txt.T + bias
    z = 2 * torch.eye(img.shape[0]) - 1
    return -F.logsigmoid(z * logits).sum() / img.shape[0]


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name,loss,micro", [("tiny-vit-28", naive_clip_loss, 3), ("tiny-vit-28", naive_clip_loss, 5),
                                             ("tiny-siglip-28", naive_siglip_loss, 4)])
def test_micro_batched_step_equals_full_batch(name, loss, micro):
    torch.manual_seed(0)
    cfg = get_model_config(name)
    cfg.towers["image"].patch_dropout = 0.25  # random masks must be replayed identically
    model = AlignedModel(cfg).train()
    pixels = torch.randn(11, 3, 28, 28)
    ids = torch.randint(3, 500, (11, cfg.towers["text"].context_length))
    ids[:, 6] = 2

    torch.manual_seed(123)
    full_loss = contrastive_step(model, pixels, ids, loss)
    full = grads(model)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    cached_loss = contrastive_step(model, pixels, ids, loss, micro_batch=micro)
    cached = grads(model)

    assert cached_loss.item() == pytest.approx(full_loss.item(), rel=1e-6)
    assert full.keys() == cached.keys() and "logit_scale" in full
    # Equal up to float32 rounding, not bitwise: micro-batches change the GEMM shapes and the
    # order of the batch sums. Judged against each tensor's largest gradient, since small entries
    # (padded or barely used positions) carry errors on that scale: see tests/tolerances.py. The
    # longest sum is the MLP's 384 hidden units (batch x tokens is 11 x 24 = 264).
    for key in full:
        assert_within_rounding(cached[key], full[key], terms=384, what=key)


def test_plain_accumulation_would_differ():
    """Why the cache exists: averaging per-micro-batch losses is a different objective."""
    torch.manual_seed(0)
    img, txt = F.normalize(torch.randn(8, 16), dim=1), F.normalize(torch.randn(8, 16), dim=1)
    full = naive_clip_loss(img, txt, 10.0)
    halves = (naive_clip_loss(img[:4], txt[:4], 10.0) + naive_clip_loss(img[4:], txt[4:], 10.0)) / 2
    assert abs(full.item() - halves.item()) > 1e-3
