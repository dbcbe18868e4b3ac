"""Group-disjoint train/validation/test splits: the seed resamples them, shares come close."""

import numpy as np
import pytest

from rcvlab.errors import DataError
from rcvlab.probe.splits import group_split

UNEQUAL = np.repeat([f"g{i}" for i in range(8)], [3, 5, 8, 13, 21, 34, 55, 89])


def sides(groups, split):
    return [frozenset(np.asarray(groups)[i].tolist()) for i in split]


def check_partition(groups, split):
    n = len(groups)
    allidx = np.concatenate(split)
    assert sorted(allidx.tolist()) == list(range(n))  # every item exactly once
    for part in split:
        assert np.array_equal(part, np.sort(part))
    a, b, c = sides(groups, split)
    assert not (a & b or a & c or b & c)  # no group in two splits


def test_different_seeds_give_different_splits_for_unequal_groups():
    splits = {tuple(sides(UNEQUAL, group_split(UNEQUAL, (0.6, 0.2, 0.2), s))) for s in range(20)}
    # 20 seeds gave a single split when the groups were sorted by size; a shuffle gives many
    assert len(splits) >= 12


def test_different_seeds_give_different_splits_for_equal_groups():
    g = np.repeat([f"g{i}" for i in range(10)], 7)
    splits = {tuple(sides(g, group_split(g, (0.6, 0.2, 0.2), s))) for s in range(20)}
    assert len(splits) >= 12


@pytest.mark.parametrize("seed", range(20))
def test_every_split_is_group_disjoint_and_non_empty(seed):
    split = group_split(UNEQUAL, (0.6, 0.2, 0.2), seed)
    check_partition(UNEQUAL, split)
    assert all(len(part) > 0 for part in split)


def test_same_seed_same_split():
    a = group_split(UNEQUAL, (0.6, 0.2, 0.2), 7)
    b = group_split(list(UNEQUAL), (0.6, 0.2, 0.2), 7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(("n_groups", "tol"), [(30, 0.05), (141, 0.02)])
def test_item_shares_come_close_to_the_fractions(n_groups, tol):
    sizes = np.random.default_rng(n_groups).integers(5, 35, n_groups)
    g = np.repeat([f"s{i}" for i in range(n_groups)], sizes)
    for seed in range(20):
        split = group_split(g, (0.6, 0.2, 0.2), seed)
        check_partition(g, split)
        shares = np.array([len(p) for p in split]) / len(g)
        assert np.abs(shares - [0.6, 0.2, 0.2]).max() < tol, (seed, shares)


def test_three_equal_groups_go_one_to_each_split():
    g = np.repeat(["a", "b", "c"], 4)
    seen = set()
    for seed in range(12):
        split = group_split(g, (0.6, 0.2, 0.2), seed)
        assert [len(p) for p in split] == [4, 4, 4]
        seen.add(tuple(sorted(s)[0] for s in sides(g, split)))
    assert len(seen) == 6  # all 3! assignments occur


def test_a_zero_share_gets_no_group():
    g = np.repeat([f"g{i}" for i in range(6)], 3)
    tr, va, te = group_split(g, (0.5, 0.0, 0.5), 1)
    assert len(va) == 0 and len(tr) == len(te) == 9


@pytest.mark.parametrize(
    ("groups", "fractions", "match"),
    [
        (["a", "a", "b"], (0.6, 0.2, 0.2), "Only 2 groups for 3 non-empty splits"),
        ([], (0.6, 0.2, 0.2), "non-empty 1-D"),
        (["a", "b", "c"], (0.6, 0.2), r"got \(0.6, 0.2\)"),
        (["a", "b", "c"], (0.7, 0.2, 0.2), r"got \(0.7, 0.2, 0.2\)"),
        (["a", "b", "c"], (1.2, -0.1, -0.1), "shares >= 0"),
        (["a", "b", "c"], (float("nan"), 0.5, 0.5), "summing to 1"),
    ],
)
def test_bad_input_is_one_clear_error(groups, fractions, match):
    with pytest.raises(DataError, match=match):
        group_split(groups, fractions, 0)
