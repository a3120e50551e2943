"""Held-out splits of a zoo: seeded, stratified by task, and duplicate-aware.

A zoo's questions fall into four disjoint parts:

- **test**: held out for evaluation. Rows with `split == "test"` when the zoo has any; otherwise a seeded,
  task-stratified sample (`test_fraction` of every task).
- **aptitude**: the aptitude-test items (`modelsat.aptitude`), chosen from the rest; never used to train or
  evaluate routing, only to measure capability profiles.
- **validation**: a task-stratified sample of what remains, for early stopping and score calibration.
- **train**: the router's training instructions.

Questions with the same instruction text (after folding whitespace) always fall into the same part: MMLU-Pro
has 97 pairs of identical items under different ids, and splitting them would leak test answers into training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelsat.data import RoutingData
from modelsat.errors import ConfigError

__all__ = ["DataSplit", "split_routing_data", "stratified_sample"]


@dataclass(frozen=True)
class DataSplit:
    """Row indices of a zoo's parts (disjoint; union = all rows).

    Attributes:
        seed: the seed the split was drawn with.
        test: [n_test] held-out rows.
        pool: [n_pool] rows available for the aptitude test, validation and training.
    """

    seed: int
    test: np.ndarray
    pool: np.ndarray


def stratified_sample(
    rows: np.ndarray,
    strata: np.ndarray,
    groups: np.ndarray,
    fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Take about `fraction` of `rows` from every stratum, keeping rows of one group together.

    Args:
        rows: [r] row indices to split.
        strata: [r] stratum label per row (e.g. the task).
        groups: [r] group key per row (e.g. the prompt hash); a group is never split.
        fraction: share to take, in [0, 1).
        seed: seed of the shuffle; the result depends only on (rows, strata, groups, fraction, seed).
    Returns:
        (taken, rest): sorted row indices.
    """
    rng = np.random.default_rng(seed)
    taken: list[int] = []
    for stratum in sorted(set(strata.tolist())):
        idx = np.flatnonzero(strata == stratum)
        by_group: dict[str, list[int]] = {}
        for i in idx:
            by_group.setdefault(groups[i], []).append(int(rows[i]))
        keys = sorted(by_group)
        order = rng.permutation(len(keys))
        target = int(round(fraction * len(idx)))
        got = 0
        for k in order:
            if got >= target:
                break
            members = by_group[keys[k]]
            taken.extend(members)
            got += len(members)
    taken_arr = np.array(sorted(taken), dtype=np.int64)
    rest = np.setdiff1d(rows, taken_arr)
    return taken_arr, rest


def split_routing_data(zoo: RoutingData, seed: int, test_fraction: float) -> DataSplit:
    """Held-out test rows and the training pool of a zoo.

    Args:
        zoo: the zoo.
        seed: split seed (recorded in the checkpoint).
        test_fraction: share of every task held out when the zoo has no `split == "test"` rows, in (0, 1).
    Returns:
        The `DataSplit`. Rows that share an instruction text with a test row are moved to test as well.
    Raises:
        ConfigError: if `test_fraction` is outside (0, 1) or the split leaves no training rows.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction={test_fraction!r}; allowed: a number in (0, 1)")
    hashes = zoo.prompt_hashes()
    all_rows = np.arange(zoo.n_questions)
    given = zoo.splits == "test"
    if given.any():
        test = np.flatnonzero(given)
    else:
        test, _ = stratified_sample(all_rows, zoo.tasks, hashes, test_fraction, seed)
    # keep identical instructions on the held-out side
    test_hashes = set(hashes[test].tolist())
    test = np.flatnonzero(np.isin(hashes, list(test_hashes)))
    pool = np.setdiff1d(all_rows, test)
    if len(pool) == 0:
        raise ConfigError(
            f"zoo {zoo.name!r}: the split leaves no training questions (test_fraction={test_fraction})"
        )
    return DataSplit(seed=seed, test=test, pool=pool)
