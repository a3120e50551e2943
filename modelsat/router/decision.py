"""Anchor and defer: route away from the candidate that is best by its profile only when the router is sure.

The router under-routes to newcomers and over-trusts small score differences between strong candidates. The
rule below (issue 17, "a calibrated decision rule"; the anchored deferral of UniRoute, arXiv 2502.08773, and of
the routing-plateau study, arXiv 2606.07587) keeps a default, the **anchor**: the candidate with the highest
estimated accuracy on the training pool (a training model's pool accuracy per task, a newcomer's profile linked
to that scale: `modelsat.router.prior.TaskAccuracies`; mean over tasks). Another candidate is chosen only when
its calibrated p(correct) beats the anchor's by more than a margin δ:

    choice(x) = argmax_j  p_j(x) + δ · [j = anchor]

δ = 0 is the plain argmax of p (the paper's rule); δ → 1 is the best single model by profile. δ
(`RouterConfig.defer_margin`, probability units) is chosen on the validation split, with its own newcomers,
by `fit_defer_margin`. The rule applies to accuracy-only routing (λ = 0); cost-aware routing keeps
argmax p − λ·cost, where λ chosen on validation plays the anchor's role.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["DEFER_MARGINS", "anchor_column", "defer_choice", "fit_defer_margin"]

DEFER_MARGINS: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)
"""δ values `fit_defer_margin` tries (probability units)."""


def anchor_column(estimated_accuracy: Sequence[float] | np.ndarray) -> int:
    """Index of the anchor: the candidate with the highest estimated accuracy (first on ties).

    Args:
        estimated_accuracy: [m] each candidate's estimated accuracy in [0, 1].
    Raises:
        ValueError: if `estimated_accuracy` is empty.
    """
    a = np.asarray(estimated_accuracy, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no candidates: the anchor needs at least one estimated accuracy")
    return int(np.argmax(a))


def defer_choice(p: np.ndarray, estimated_accuracy: np.ndarray, margin: float) -> np.ndarray:
    """[n] chosen column per instruction: argmax of p with δ added to the anchor's column.

    Args:
        p: [n, m] calibrated p(correct). estimated_accuracy: [m] the anchor criterion (`anchor_column`).
        margin: δ >= 0 in probability units.
    Raises:
        ValueError: if δ < 0 or not finite, or the shapes disagree.
    """
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"defer_margin={margin!r}; allowed: a finite number >= 0 (probability units)")
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(estimated_accuracy):
        raise ValueError(f"p has shape {p.shape}; expected [n, {len(estimated_accuracy)}]")
    if margin == 0:
        return p.argmax(1)
    util = p.copy()
    util[:, anchor_column(estimated_accuracy)] += margin
    return util.argmax(1)


def fit_defer_margin(
    p: np.ndarray,
    outcomes: np.ndarray,
    estimated_accuracy: np.ndarray,
    margins: Sequence[float] = DEFER_MARGINS,
) -> tuple[float, float, dict[float, float]]:
    """Choose δ on validation: the margin with the highest routing accuracy (the smallest on ties).

    Args:
        p: [n, m] calibrated p(correct) on the validation split. outcomes: [n, m] in [0, 1].
        estimated_accuracy: [m] the anchor criterion. margins: the δ grid (must contain 0).
    Returns:
        (δ, validation routing accuracy at δ, {δ: accuracy} for the whole grid).
    """
    if 0.0 not in margins:
        raise ValueError("the margin grid must contain 0 (the plain argmax)")
    rows = np.arange(len(outcomes))
    curve = {float(d): float(outcomes[rows, defer_choice(p, estimated_accuracy, d)].mean()) for d in margins}
    best = max(curve.values())
    chosen = min(d for d, a in curve.items() if a >= best - 1e-12)
    return chosen, curve[chosen], curve
