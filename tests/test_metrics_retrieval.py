"""Blocked retrieval metrics against a full-matrix CLIP_benchmark-style reference."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tether.metrics import retrieval_ranks, retrieval_recall


def reference_recall(images, texts, text_to_image, ks):
    """CLIP_benchmark's procedure: full score matrix, positive-pair mask, top-k, 'any positive in top-k'."""
    images = F.normalize(images.double(), dim=-1)
    texts = F.normalize(texts.double(), dim=-1)
    scores = texts @ images.T                                        # (n_texts, n_images)
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(texts)), torch.as_tensor(text_to_image)] = True

    def recall(s, pos, k):
        top = torch.topk(s, min(k, s.shape[1]), dim=1).indices      # (n, k)
        onehot = F.one_hot(top, num_classes=s.shape[1])             # (n, k, m)
        true_pos = (onehot * pos[:, None, :]).sum(dim=(1, 2))
        return ((true_pos / pos.sum(dim=1)) > 0).double().mean().item()

    out = {}
    for k in ks:
        out[f"image_retrieval_recall@{k}"] = recall(scores, positive, k)
        out[f"text_retrieval_recall@{k}"] = recall(scores.T, positive.T, k)
    # ranks from a full descending sort: position of the first correct item, 1-based
    t2i = [int((torch.argsort(scores[j], descending=True) == text_to_image[j]).nonzero()[0]) + 1
           for j in range(len(texts))]
    i2t = []
    for i in range(len(images)):
        order = torch.argsort(scores[:, i], descending=True)
        i2t.append(int(positive[order, i].nonzero()[0]) + 1)
    out["image_retrieval_mean_rank"] = float(np.mean(t2i))
    out["image_retrieval_median_rank"] = float(np.median(t2i))
    out["text_retrieval_mean_rank"] = float(np.mean(i2t))
    out["text_retrieval_median_rank"] = float(np.median(i2t))
    return out


def random_case(g, n_images, max_captions=4, dim=8, noise=1.0):
    caps = torch.randint(1, max_captions + 1, (n_images,), generator=g)
    t2i = torch.repeat_interleave(torch.arange(n_images), caps)
    t2i = t2i[torch.randperm(len(t2i), generator=g)]                # captions in any order
    images = torch.randn(n_images, dim, generator=g)
    texts = images[t2i] + noise * torch.randn(len(t2i), dim, generator=g)
    return images, texts, t2i


def test_matches_clip_benchmark_reference_on_many_random_cases():
    g = torch.Generator().manual_seed(0)
    ks = (1, 2, 5, 10)
    for trial in range(60):
        n_images = int(torch.randint(1, 30, (1,), generator=g))
        images, texts, t2i = random_case(g, n_images, max_captions=int(torch.randint(1, 6, (1,), generator=g)),
                                         dim=int(torch.randint(2, 16, (1,), generator=g)),
                                         noise=float(torch.rand(1, generator=g)) * 2)
        got = retrieval_recall(images, texts, t2i, ks=ks, chunk_size=int(torch.randint(1, 12, (1,), generator=g)))
        want = reference_recall(images, texts, t2i, ks)
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-12), (trial, key)
        assert got["n_images"] == n_images and got["n_captions"] == len(t2i)


def test_several_captions_per_image_any_caption_counts():
    # image 0 has captions 0 (pointing at image 1) and 1 (perfect): a hit at K=1 through caption 1
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.1, 1.0]])
    t2i = [0, 0, 1]
    m = retrieval_recall(images, texts, t2i, ks=(1, 2))
    assert m["text_retrieval_recall@1"] == 0.5 and m["text_retrieval_recall@2"] == 1.0
    assert m["image_retrieval_recall@1"] == pytest.approx(2 / 3)
    t2i_ranks, i2t_ranks = retrieval_ranks(images, texts, t2i)
    assert t2i_ranks.tolist() == [2, 1, 1]
    # image 1: its caption (score ~0.995) is beaten by caption 0 (score 1.0)
    assert i2t_ranks.tolist() == [1, 2]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_blocked_equals_unblocked_for_many_chunk_sizes(seed):
    g = torch.Generator().manual_seed(seed)
    images, texts, t2i = random_case(g, 57, max_captions=5, dim=12, noise=1.5)
    full = retrieval_ranks(images, texts, t2i, chunk_size=10_000)
    for bs in (1, 2, 3, 5, 7, 16, 31, 56, 57, 58, 200, None):
        got = retrieval_ranks(images, texts, t2i, chunk_size=bs)
        assert torch.equal(got[0], full[0]) and torch.equal(got[1], full[1]), bs
    m_full = retrieval_recall(images, texts, t2i, chunk_size=10_000)
    assert retrieval_recall(images, texts, t2i, chunk_size=3) == m_full


def test_perfect_embeddings_give_recall_one_and_rank_one():
    g = torch.Generator().manual_seed(4)
    images = torch.randn(40, 32, generator=g)
    t2i = torch.arange(40).repeat_interleave(3)                     # 3 identical captions per image
    m = retrieval_recall(images, images[t2i] * 2.5, t2i, ks=(1, 5), chunk_size=7)
    for key in ("image_retrieval_recall@1", "text_retrieval_recall@1", "image_retrieval_recall@5"):
        assert m[key] == 1.0
    for key in ("image_retrieval_mean_rank", "image_retrieval_median_rank",
                "text_retrieval_mean_rank", "text_retrieval_median_rank"):
        assert m[key] == 1.0


def test_ties_count_in_favour_of_the_correct_item():
    # images 0 and 1 are identical: caption of image 1 ties with image 0 and still ranks 1
    images = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t2i_ranks, i2t_ranks = retrieval_ranks(images, texts, [1, 2], chunk_size=1)
    assert t2i_ranks.tolist() == [1, 1]
    # image 0 has no caption here: rank n_captions + 1
    assert i2t_ranks.tolist() == [3, 1, 1]


def test_ranks_are_deterministic_and_median_is_numpys():
    g = torch.Generator().manual_seed(5)
    images, texts, t2i = random_case(g, 20, max_captions=2, noise=3.0)
    a = retrieval_recall(images, texts, t2i)
    b = retrieval_recall(images.numpy(), texts.numpy().astype(np.float64), t2i.numpy())
    for key in a:
        assert a[key] == pytest.approx(b[key])
    t2i_r, i2t_r = retrieval_ranks(images, texts, t2i)
    assert a["image_retrieval_median_rank"] == float(np.median(t2i_r.numpy()))
    assert a["text_retrieval_mean_rank"] == pytest.approx(float(i2t_r.double().mean()))


def test_k_larger_than_candidates_is_recall_one():
    images = torch.eye(3)
    m = retrieval_recall(images, torch.ones(2, 3), [0, 1], ks=(10,), images_without_captions="exclude")
    assert m["image_retrieval_recall@10"] == 1.0 and m["text_retrieval_recall@10"] == 1.0


def test_images_without_captions_error_or_exclude():
    g = torch.Generator().manual_seed(6)
    images, texts, _ = random_case(g, 6, max_captions=1)
    t2i = [0, 1, 2, 2, 4, 4]                                        # images 3 and 5 have none
    with pytest.raises(ValueError, match=r"2 image\(s\) have no caption.*\[3, 5\]"):
        retrieval_recall(images, texts, t2i)
    m = retrieval_recall(images, texts, t2i, images_without_captions="exclude")
    assert m["text_retrieval_images_excluded"] == 2
    ref = reference_recall(images[[0, 1, 2, 4]], texts, torch.tensor([0, 1, 2, 2, 3, 3]), (1, 5, 10))
    for k in (1, 5, 10):
        # image -> text candidates are captions, so dropping the caption-less images changes nothing else
        assert m[f"text_retrieval_recall@{k}"] == pytest.approx(ref[f"text_retrieval_recall@{k}"])
    with pytest.raises(ValueError, match="images_without_captions"):
        retrieval_recall(images, texts, t2i, images_without_captions="ignore")


def test_bad_inputs_name_the_problem():
    images, texts = torch.randn(4, 3), torch.randn(5, 3)
    t2i = [0, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="5 entries.*4 captions|4 entries.*5 captions"):
        retrieval_recall(images, texts, t2i[:4])
    with pytest.raises(ValueError, match=r"text_to_image\[2\] = 7 is out of range for 4 images"):
        retrieval_recall(images, texts, [0, 1, 7, 3, 3])
    with pytest.raises(ValueError, match=r"text_to_image\[0\] = -1"):
        retrieval_recall(images, texts, [-1, 1, 2, 3, 3])
    with pytest.raises(ValueError, match="integer image indices; caption 1"):
        retrieval_recall(images, texts, [0, 1.5, 2, 3, 3])
    bad = texts.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"text_embeds has NaN or infinite values in 1 row\(s\): \[3\]"):
        retrieval_recall(images, bad, t2i)
    bad = images.clone()
    bad[[1, 2]] = 0
    with pytest.raises(ValueError, match=r"image_embeds has zero-norm rows.*2 row\(s\): \[1, 2\]"):
        retrieval_recall(bad, texts, t2i)
    bad = images.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"image_embeds has NaN or infinite values.*\[0\]"):
        retrieval_recall(bad, texts, t2i)
    with pytest.raises(ValueError, match="image_embeds is empty"):
        retrieval_recall(torch.empty(0, 3), texts, t2i)
    with pytest.raises(ValueError, match="text_embeds is empty"):
        retrieval_recall(images, torch.empty(0, 3), [])
    with pytest.raises(ValueError, match="dimension 3 but text_embeds has 2"):
        retrieval_recall(images, torch.randn(5, 2), t2i)
    with pytest.raises(ValueError, match="2-D"):
        retrieval_recall(torch.randn(4), texts, t2i)
    with pytest.raises(ValueError, match="positive integers"):
        retrieval_recall(images, texts, t2i, ks=(0,))
    with pytest.raises(ValueError, match="chunk_size"):
        retrieval_recall(images, texts, t2i, chunk_size=0)
