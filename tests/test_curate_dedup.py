"""tether dedup: exact mode against a brute-force reference (pairs at the threshold included), cluster
mode's pairs and recall, groups and the keep rules, the CLI's outputs and errors."""
from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from tether.cli.main import main
from tether.curate import find_duplicates, write_part
from tether.curate.dedup import choose_kept, deduplicate, group_pairs, removed_fraction
from tether.curate.dedup_job import sample_recall
from tether.curate.pairs import (Pairs, brute_force_pairs, cluster_pairs, exact_cosine, exact_pairs,
                                 float32_tolerance, normalize_rows)

pytest.importorskip("faiss")
pytest.importorskip("scipy")


def reference_pairs(x: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """Brute force by the definition: every pair's exact dot product of the float32 rows (fsum)."""
    x64 = x.astype(np.float64)
    out = set()
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if math.fsum((x64[i] * x64[j]).tolist()) >= threshold:
                out.add((i, j))
    return out


def clustered(n: int, dim: int, centres: int, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim))
    return c[rng.integers(0, centres, n)] / math.sqrt(dim) + spread * rng.standard_normal((n, dim)) / math.sqrt(dim)


def with_threshold_band(n: int = 400, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, float]:
    """Clustered rows plus 40 planted partners whose cosines crowd within 3e-6 of 0.9, and the threshold
    set to the exact cosine of one planted pair, so that pairs fall exactly at, just above and just
    below it (inside the float32 tolerance band)."""
    rng = np.random.default_rng(seed)
    x = normalize_rows(clustered(n, dim, 6, 0.8, seed))
    sources = rng.choice(n, 40, replace=False)
    planted = []
    for k, s in enumerate(sources):
        noise = rng.standard_normal(dim)
        noise -= noise @ x[s] * x[s]
        noise /= np.linalg.norm(noise)
        angle = math.acos(0.9 + (rng.uniform(-3e-6, 3e-6) if k else 0.0))
        planted.append(math.cos(angle) * x[s] + math.sin(angle) * noise)
    x = normalize_rows(np.vstack([x, planted]))
    threshold = float(exact_cosine(x, np.array([sources[0]]), np.array([n]))[0])
    return x, threshold


def as_set(p: Pairs) -> set[tuple[int, int]]:
    return set(zip(p.i.tolist(), p.j.tolist()))


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_mode_is_the_brute_force_pair_set_at_the_threshold(seed):
    x, t = with_threshold_band(seed=seed)
    ref = reference_pairs(x, t)
    tol = float32_tolerance(x.shape[1])
    sims = exact_cosine(x, *np.triu_indices(len(x), 1))
    # the band is exercised: pairs within the float32 tolerance on both sides, one exactly at t
    assert ((sims >= t) & (sims < t + tol)).sum() >= 5 and ((sims < t) & (sims > t - tol)).sum() >= 5
    assert (sims == t).sum() >= 1
    assert as_set(brute_force_pairs(x, t, block=97)) == ref
    # the pruned path (more rows than one block, k-means clusters) finds the same set
    found = exact_pairs(x, t, n_clusters=12, block=64, seed=seed)
    assert as_set(found) == ref
    assert found.assign is not None  # really went through the cluster pruning
    np.testing.assert_allclose(found.sim, [math.fsum((x[i].astype(float) * x[j]).tolist())
                                           for i, j in zip(found.i, found.j)], rtol=0, atol=1e-12)


def test_exact_mode_on_separated_clusters_prunes_and_stays_exact():
    rng = np.random.default_rng(3)
    x = normalize_rows(clustered(1500, 48, 30, 0.5, 3))
    dup = rng.choice(1500, 200, replace=False)
    x[dup[100:]] = normalize_rows(x[dup[:100]] + 0.05 * rng.standard_normal((100, 48)) / math.sqrt(48))
    for t in (0.95, 0.8):
        assert as_set(exact_pairs(x, t, n_clusters=40, block=256)) == as_set(brute_force_pairs(x, t))


def test_cluster_mode_finds_a_subset_and_its_recall_is_measured():
    x, t = with_threshold_band(n=600, seed=4)
    exact = as_set(exact_pairs(x, t - 0.2, block=128, n_clusters=8))
    cluster = cluster_pairs(x, t - 0.2, n_clusters=8)
    found = as_set(cluster)
    assert found <= exact
    # every pair found is within one cluster
    assert (cluster.assign[cluster.i] == cluster.assign[cluster.j]).all()
    # with every row sampled, sample_recall is the full recall
    r = sample_recall(x, cluster, t - 0.2, rows=len(x))
    assert r["exact_pairs"] == len(exact)
    assert r["recall"] == pytest.approx(len(found & exact) / len(exact))


def chain_rows() -> np.ndarray:
    """Rows 0~1, 1~2 (0 !~ 2) at threshold 0.9; 3 = 4 (identical); 5 and 6 alone."""
    def unit(deg: float, axis: int = 0) -> np.ndarray:
        v = np.zeros(6)
        v[axis], v[axis + 1] = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        return v
    return np.array([unit(0), unit(20), unit(45), unit(0, 2), unit(0, 2), unit(0, 4), unit(80, 4)])


def test_groups_are_connected_components_and_one_member_is_kept():
    x = chain_rows()
    groups, keep = find_duplicates(x, 0.9)
    assert groups.tolist() == [0, 0, 0, 1, 1, -1, -1]
    assert keep.tolist() == [True, False, False, True, False, True, True]  # first in input order
    # SemDeDup's greedy rule would keep rows 0 and 2 of the chain; here exactly one per group
    for rule in ("first", "centroid", "farthest"):
        g, k = find_duplicates(x, 0.9, keep=rule)
        assert [int(k[g == i].sum()) for i in range(g.max() + 1)] == [1, 1]
        assert k[g < 0].all()


def test_keep_rules_pick_the_documented_member():
    x = chain_rows()
    scores = np.array([0.1, 0.3, 0.2, 0.5, 0.5, 0.0, 0.0])
    _, keep = find_duplicates(x, 0.9, keep="score", scores=scores)
    assert np.flatnonzero(keep).tolist() == [1, 3, 5, 6]  # highest score; the 0.5 tie goes to row 3
    xn = normalize_rows(x).astype(np.float64)
    _, centroid = find_duplicates(x, 0.9, keep="centroid")
    _, farthest = find_duplicates(x, 0.9, keep="farthest")
    mean = xn[:3].sum(0)
    sims = xn[:3] @ (mean / np.linalg.norm(mean))
    assert centroid[:3].tolist() == (np.arange(3) == np.argmax(sims)).tolist()  # the middle of the chain
    assert farthest[:3].tolist() == (np.arange(3) == np.argmin(sims)).tolist()  # the far end of the chain
    assert centroid[3] and farthest[3]  # identical rows tie exactly: first in input order
    with pytest.raises(ValueError, match="tether score"):
        find_duplicates(x, 0.9, keep="score")


def test_cluster_mode_centroid_rule_uses_the_kmeans_centroid():
    x = normalize_rows(clustered(300, 16, 5, 0.3, 5))
    r = deduplicate(x, 0.97, "cluster", "farthest", n_clusters=5)
    sim = np.einsum("ij,ij->i", x.astype(float), r.pairs.centroids[r.pairs.assign].astype(float))
    for g in range(r.n_groups):
        members = np.flatnonzero(r.group_ids == g)
        assert r.keep[members].sum() == 1
        assert members[r.keep[members]][0] == members[np.argmin(sim[members])]


def test_removed_fraction_and_group_numbering():
    x = chain_rows()
    pairs = exact_pairs(normalize_rows(x), 0.5)
    # at 0.5: {0, 1, 2} (cos 45 deg = 0.71), {3, 4}; at 0.9: the chain and {3, 4}; at 0.99: {3, 4} only
    table = removed_fraction(pairs, len(x), [0.99, 0.5, 0.9])
    assert [(row["threshold"], row["groups"], row["removed"]) for row in table] == [
        (0.5, 2, 3), (0.9, 2, 3), (0.99, 1, 1)]
    assert table[1]["fraction_removed"] == pytest.approx(3 / 7)
    assert group_pairs(pairs.at_least(0.99), 7).tolist() == [-1, -1, -1, 0, 0, -1, -1]


@pytest.mark.parametrize("bad, match", [
    (dict(threshold=1.5), r"\[-1, 1\]"), (dict(mode="fuzzy"), "mode"), (dict(keep="best"), "keep")])
def test_bad_arguments_are_one_line_errors(bad, match):
    args = dict(embeddings=np.eye(3), threshold=0.9) | bad
    with pytest.raises(ValueError, match=match):
        find_duplicates(**args)


def test_bad_embeddings_name_the_row():
    x = np.eye(4)
    x[2] = 0
    with pytest.raises(ValueError, match=r"row\(s\) \[2\]"):
        find_duplicates(x, 0.9)
    with pytest.raises(ValueError, match="empty"):
        find_duplicates(np.zeros((0, 4)), 0.9)


def test_choose_kept_rejects_unknown_rule():
    with pytest.raises(ValueError, match="keep"):
        choose_kept(np.eye(2, dtype=np.float32), np.array([0, 0]), "random")


def _folder(tmp_path):
    rng = np.random.default_rng(7)
    x = normalize_rows(clustered(300, 24, 4, 0.6, 7))
    x[250:300] = normalize_rows(x[:50] + 0.02 * rng.standard_normal((50, 24)))
    keys = [f"k{i:03d}" for i in range(300)]
    for part, rows in enumerate((slice(0, 120), slice(120, 300))):
        write_part(tmp_path / "emb", part, {"image": x[rows], "text": x[rows]},
                   {"key": keys[rows], "caption": [f"caption {k}" for k in keys[rows]]}, dtype="float32")
    return tmp_path / "emb", x, keys


def test_cli_dedup_writes_groups_keep_list_sweep_and_sheet(tmp_path, capsys):
    folder, x, keys = _folder(tmp_path)
    out = tmp_path / "dedup"
    assert main(["dedup", str(folder), "--threshold", "0.95", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    groups, keep = find_duplicates(x, 0.95)
    assert f"{int((~keep).sum())} rows removed" in printed
    kept = pq.read_table(out / "keep.parquet").to_pydict()
    assert kept["key"] == keys and kept["kept"] == keep.tolist()
    assert all((r is None) == k for r, k in zip(kept["reason"], kept["kept"]))
    table = pq.read_table(out / "groups.parquet").to_pydict()
    by_group: dict[int, list[bool]] = {}
    for g, k in zip(table["group_id"], table["kept"]):
        by_group.setdefault(g, []).append(k)
    assert len(by_group) == groups.max() + 1 and all(sum(v) == 1 for v in by_group.values())
    for f in ("sweep.md", "sweep.png", "largest_groups.png", "summary.json"):
        assert (out / f).stat().st_size > 0


def test_cli_dedup_cluster_mode_prints_recall(tmp_path, capsys):
    folder, _, _ = _folder(tmp_path)
    assert main(["dedup", str(folder), "--threshold", "0.9", "--mode", "cluster", "--keep", "farthest",
                 "--out", str(tmp_path / "d"), "--no-progress"]) == 0
    assert "recall vs exact mode" in capsys.readouterr().out


def test_cli_dedup_errors_are_one_line(tmp_path, capsys):
    folder, _, _ = _folder(tmp_path)
    assert main(["dedup", str(folder), "--threshold", "1.2", "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "[-1, 1]" in err
    assert main(["dedup", str(folder), "--threshold", "0.9", "--keep", "score", "--out", str(tmp_path / "d")]) == 1
    assert "tether score" in capsys.readouterr().err
