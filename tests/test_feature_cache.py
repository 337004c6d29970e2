"""LiT feature cache: a locked tower's outputs served from RAM, exactly as the tower computes them."""
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tether.models import AlignedModel, get_model_config
from tether.train.config import load_train_config
from tether.train.feature_cache import install_feature_cache, remove_feature_cache
from tether.train.optim import lock_tower
from tether.train.run import train

from tolerances import assert_within_rounding


def _locked_tower():
    torch.manual_seed(0)
    model = AlignedModel(get_model_config("tiny-vit-28"))
    lock_tower(model, "image")
    return model.towers["image"]


def test_hits_equal_the_tower_and_misses_are_computed():
    tower = _locked_tower()
    pixels = torch.randn(12, 3, 28, 28)
    with torch.no_grad():
        # References run with the batch shapes the cache will see: only these are bitwise claims
        # (same inputs, same shapes, same machine); BLAS rounds differently for other shapes.
        first_ref, tail_ref, whole = tower(pixels[:8]), tower(pixels[8:]), tower(pixels)
        cache = install_feature_cache(tower, max_mib=64)
        first = tower(pixels[:8])                          # all miss: one call of the real forward
        mixed = tower(pixels[4:])                          # rows 4-7 hit, 8-11 miss (encoded as one batch of 4)
        again = tower(pixels.flip(0))                      # all hit, in another order
    assert torch.equal(first, first_ref)
    assert torch.equal(mixed[:4], first[4:8])              # the hits are the stored rows ...
    assert torch.equal(mixed[4:], tail_ref)                # ... and the misses the tower's output on them
    assert torch.equal(again, torch.cat([first, mixed[4:]]).flip(0))   # every row served from its own entry
    # Against one 12-row run: equal up to float32 rounding (longest sum: the MLP's 384 hidden units).
    assert_within_rounding(again.flip(0), whole, terms=384, what="cached features vs a 12-row run")
    assert cache.stats.as_dict()["hits"] == 4 + 12 and cache.stats.misses == 8 + 4
    assert cache.stats.entries == 12


def test_one_changed_bit_misses_and_a_full_cache_stores_nothing_more():
    tower = _locked_tower()
    pixels = torch.randn(4, 3, 28, 28)
    row_bytes = tower(pixels[:1]).numel() * 4
    cache = install_feature_cache(tower, max_mib=2.5 * row_bytes / 2**20)   # room for two rows
    with torch.no_grad():
        tower(pixels)
        nudged = pixels.clone()
        nudged.view(-1)[0] = torch.nextafter(nudged.view(-1)[0], torch.tensor(1e9))
        out = tower(nudged[:1])
    assert cache.stats.entries == 2 and cache.stats.misses == 5 and cache.stats.hits == 0
    remove_feature_cache(tower)
    with torch.no_grad():
        assert torch.equal(out, tower(nudged[:1]))
    assert "forward" not in vars(tower)                    # the class's forward is back


def test_cache_refuses_a_trainable_tower():
    torch.manual_seed(0)
    model = AlignedModel(get_model_config("tiny-vit-28"))
    with pytest.raises(ValueError, match="locked tower"):
        install_feature_cache(model.towers["image"], 64)


def _folder_dataset(root, n=24):
    torch.manual_seed(1)
    root.mkdir()
    words = ["red", "green", "blue", "round", "square", "small", "large", "dark"]
    for i in range(n):
        pixels = (torch.rand(28, 28, 3) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(root / f"img{i:03d}.png")
        (root / f"img{i:03d}.txt").write_text(f"a {words[i % 8]} {words[(i // 8) % 8]} thing")
    return root


def _lit_run(tmp_path, data, name, cache_mib, extra=()):
    cfg = load_train_config(None, [
        "model=tiny-vit-28", 'lock=["image"]', "steps=6", "batch_size=8", "workers=0", "tensorboard=false",
        "checkpoint_every=100", "log_every=100", f"out_dir={tmp_path / name}", "optim.warmup_steps=1",
        f"locked_feature_cache_mib={cache_mib}", "tokenizer.train_vocab_size=560",
        f'train_data={{"type": "folder", "path": "{data}"}}', *extra])
    final = train(cfg, progress=False)
    return final, load_file(str(tmp_path / name / "model" / "model.safetensors"))


@pytest.mark.slow
def test_lit_training_with_the_cache_matches_training_without(tmp_path):
    # Bitwise by construction: with micro-batches of one row every tower call has the same shape
    # (1, 3, 28, 28), so an input encoded again in a later step or epoch gives the same bits as its
    # cached entry on any CPU. Batches of 8 would not: BLAS rounds a row differently by batch
    # shape and row position, and the second epoch regroups the rows (see tests/tolerances.py).
    data = _folder_dataset(tmp_path / "pairs")              # 24 pairs, 6 steps of 8: two epochs
    extra = ["micro_batch_size=1"]
    cached, with_cache = _lit_run(tmp_path, data, "cached", 64, extra)
    plain, without = _lit_run(tmp_path, data, "plain", 0, extra)
    stats = cached["locked_feature_cache"]
    # each step encodes its 8 rows twice (embedding pass, re-encoding pass): only the first sight misses
    assert stats["misses"] == 24 and stats["hits"] == 2 * 6 * 8 - 24 and stats["entries"] == 24
    assert "locked_feature_cache" not in plain
    assert with_cache.keys() == without.keys()
    for key in with_cache:
        assert torch.equal(with_cache[key], without[key]), key


@pytest.mark.slow
def test_gradient_cache_reencodes_from_the_feature_cache(tmp_path):
    data = _folder_dataset(tmp_path / "pairs")
    extra = ["micro_batch_size=4", "steps=3"]               # one epoch; each batch encoded twice
    cached, with_cache = _lit_run(tmp_path, data, "cached", 64, extra)
    _, without = _lit_run(tmp_path, data, "plain", 0, extra)
    stats = cached["locked_feature_cache"]
    assert stats["misses"] == 24 and stats["hits"] == 24  # the re-encoding pass hits every row
    # Bitwise by construction: one epoch, and the re-encoding pass asks for the same micro-batch
    # (same rows, same order, same shape) that was just encoded, with or without the cache.
    for key in with_cache:
        assert torch.equal(with_cache[key], without[key]), key


def test_no_cache_for_augmented_locked_images(tmp_path, capsys):
    data = _folder_dataset(tmp_path / "pairs")
    final, _ = _lit_run(tmp_path, data, "augmented", 64, ["augment=true", "steps=1"])
    assert "locked_feature_cache" not in final
    assert "off with augment=true" in capsys.readouterr().out
