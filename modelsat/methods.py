"""The routing methods the evaluation compares: one class each, registered by name in `METHODS`.

A method chooses one candidate per held-out instruction from any set of candidate columns (all models, or the
seen ones only): `choose(data, cols)`. Most methods rank by a score matrix and take the argmax over the columns
(`scores`); the oracle chooses in hindsight, and `random` is an expectation (`expectation = True`: its accuracy
is the mean over the candidates, not a choice). Learned methods (`learned = True`) are fitted in `fit` on the
checkpoint's training pool and are the ones `eval.baselines` names. Each class carries its report label.

A new method is one class here (or in its own module) plus one line in `METHODS`. Metric definitions:
`modelsat.metrics`; learned baselines' predictors: `modelsat.baselines`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from modelsat.baselines import Baseline, BaselineData, KNNBaseline, MFBaseline, MLPBaseline
from modelsat.metrics import oracle_choice
from modelsat.router.decision import defer_choice

__all__ = ["METHODS", "METHOD_ORDER", "HeldOut", "Method", "method_label"]


@dataclass
class HeldOut:
    """What the methods see of the held-out questions.

    Attributes:
        models: the m candidate model names (column order).
        y: [n, m] outcomes in [0, 1]; only hindsight methods (the oracle) may read them to choose.
        costs: [n, m] recorded USD per query, or None.
        preference: [m] each model's mean outcome on the checkpoint's training pool (best single model).
        router_scores: [n, m] Model-SAT's router scores (logits).
        router_p: [n, m] their calibrated p(correct), or None (then Model-SAT is the argmax of the scores).
        router_anchor: [m] each candidate's estimated accuracy, the anchor criterion of the anchor-and-defer rule.
        defer_margin: δ of that rule (`modelsat.router.decision`); 0 = argmax.
        baseline_inputs: called once by the learned methods: (their training data, [n, d] held-out
            instruction embeddings); None when the zoo shares no training questions with the checkpoint.
        categories: [n] category of each held-out question (None: not known).
        pool_outcomes: [p, m] outcomes on the checkpoint's training pool as the router knew them: NaN where
            a model's outcome was not given to training (an unseen model outside its aptitude items).
        pool_categories: [p] category of each training-pool question.
    """

    models: list[str]
    y: np.ndarray
    costs: np.ndarray | None
    preference: np.ndarray
    router_scores: np.ndarray
    router_p: np.ndarray | None = None
    router_anchor: np.ndarray | None = None
    defer_margin: float = 0.0
    baseline_inputs: Callable[[], tuple[BaselineData, np.ndarray]] | None = None
    categories: np.ndarray | None = None
    pool_outcomes: np.ndarray | None = None
    pool_categories: np.ndarray | None = None
    _inputs: tuple[BaselineData, np.ndarray] | None = field(default=None, repr=False)

    def learned_inputs(self) -> tuple[BaselineData, np.ndarray]:
        """The learned methods' (training data, held-out embeddings), computed on first use."""
        if self.baseline_inputs is None:
            raise ValueError("no training pool: learned methods cannot be fitted")
        if self._inputs is None:
            self._inputs = self.baseline_inputs()
        return self._inputs


class Method:
    """A routing method. Subclasses set `name` and `label` and implement `scores` (or `choose`)."""

    name: ClassVar[str]
    label: ClassVar[str]
    learned: ClassVar[bool] = False
    expectation: ClassVar[bool] = False

    def fit(self, data: HeldOut) -> Method:
        """Prepare the method (learned methods fit here); returns self."""
        return self

    def scores(self, data: HeldOut) -> np.ndarray:
        """[n, m] scores, higher = routed to."""
        raise NotImplementedError

    def choose(self, data: HeldOut, cols: Sequence[int]) -> np.ndarray:
        """[n] chosen candidate per instruction, as indices into `cols`."""
        return self.scores(data)[:, list(cols)].argmax(1)

    def describe(self, data: HeldOut, cols: Sequence[int]) -> dict[str, Any]:
        """Extra report fields of this method on the columns `cols` (e.g. the best single model's name)."""
        return {}


class ModelSAT(Method):
    name = "model_sat"
    label = "Model-SAT"

    def scores(self, data: HeldOut) -> np.ndarray:
        return data.router_scores

    def choose(self, data: HeldOut, cols: Sequence[int]) -> np.ndarray:
        """The router's decision rule among `cols`: anchor and defer (the anchor is recomputed per candidate
        set), or the argmax of the scores when δ = 0 or no probabilities are given."""
        c = list(cols)
        if data.defer_margin == 0 or data.router_p is None or data.router_anchor is None:
            return super().choose(data, cols)
        return defer_choice(data.router_p[:, c], data.router_anchor[c], data.defer_margin)


class BestSingle(Method):
    name = "best_single"
    label = "best single model"

    def scores(self, data: HeldOut) -> np.ndarray:
        return np.broadcast_to(data.preference[None, :], data.y.shape)

    def describe(self, data: HeldOut, cols: Sequence[int]) -> dict[str, Any]:
        return {"model": data.models[list(cols)[int(np.argmax(data.preference[list(cols)]))]]}


class Oracle(Method):
    name = "oracle"
    label = "oracle (upper bound)"

    def choose(self, data: HeldOut, cols: Sequence[int]) -> np.ndarray:
        c = list(cols)
        return oracle_choice(
            data.y[:, c], None if data.costs is None else data.costs[:, c], data.preference[c]
        )


class RandomChoice(Method):
    name = "random"
    label = "random model"
    expectation = True

    def choose(self, data: HeldOut, cols: Sequence[int]) -> np.ndarray:
        raise TypeError("random is an expectation over the candidates, not a choice")


class LearnedBaseline(Method):
    """A baseline fitted on the instruction embeddings of the training pool (`modelsat.baselines`)."""

    learned = True
    predictor: ClassVar[type[Baseline]]
    _scores: np.ndarray | None = None

    def fit(self, data: HeldOut) -> LearnedBaseline:
        train, x_eval = data.learned_inputs()
        self._scores = self.predictor().fit(train).predict(x_eval)
        return self

    def scores(self, data: HeldOut) -> np.ndarray:
        if self._scores is None:
            self.fit(data)
        assert self._scores is not None
        return self._scores


class KNN(LearnedBaseline):
    name = "knn"
    label = "kNN (instruction embeddings)"
    predictor = KNNBaseline


class MLP(LearnedBaseline):
    name = "mlp"
    label = "MLP (instruction embeddings)"
    predictor = MLPBaseline


class MF(LearnedBaseline):
    name = "mf"
    label = "matrix factorisation"
    predictor = MFBaseline


def linked_means(outcomes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """[m] each model's mean outcome on `rows` of a pool where some models are known only on a common subset.

    A model known on every row gets its plain mean. A model known on fewer rows (a newcomer, known through its
    aptitude items) is linked through the rows every model is known on (the aptitude items): its mean there is
    mapped to the full-row scale by the least-squares line mean_full = a + b·mean_common fitted across the
    fully known models. That removes the scale problem of aptitude items chosen near 50 % correctness: a
    newcomer is compared with the others on the same scale (item-response linking in its simplest, linear
    form; IRT-Router, arXiv 2506.01048).

    Args:
        outcomes: [p, m] outcomes in [0, 1], NaN = not known.
        rows: [r] bool or index array of the rows to average over.
    Returns:
        [m] means; a model known nowhere on `rows`' common subset gets the mean of the fully known models.
    """
    y = outcomes[rows]
    known = ~np.isnan(y)
    full = known.all(0)
    common = known.all(1)
    counts = known.sum(0)
    out = np.where(full & (counts > 0), np.nan_to_num(y).sum(0) / np.maximum(counts, 1), np.nan)
    if full.all():
        return out.astype(np.float64)
    fallback = float(np.mean(out[full])) if full.any() else 0.0
    if common.sum() == 0 or full.sum() < 2:
        return np.where(full, out, fallback).astype(np.float64)
    x_full = y[common][:, full].mean(0)
    slope, intercept = (
        np.polyfit(x_full, out[full], 1) if np.ptp(x_full) > 0 else (0.0, float(out[full].mean()))
    )
    x_new = y[common][:, ~full].mean(0)
    out[~full] = np.clip(intercept + slope * x_new, 0.0, 1.0)
    return out.astype(np.float64)


class CategoryPrior(Method):
    """The best model per category, chosen on the training pool (RouterEval's and LLMRouterBench's strong
    trivial baseline: routers mostly learn per-category trends).

    A model's estimate in category c is its mean outcome on the pool's questions of c (`linked_means`: an
    unseen model, known only on its aptitude items, is put on the same scale through those items), shrunk
    toward its mean on the whole pool: (n_c·mean_c + k·mean) / (n_c + k), with k = `SHRINKAGE` pseudo-questions
    and n_c the category's questions that every model is known on. Categories absent from the pool fall back
    to the whole-pool mean.
    """

    name = "category_prior"
    label = "category prior (best model per category)"
    learned = True
    SHRINKAGE: ClassVar[float] = 10.0
    _by_category: dict[Any, np.ndarray] | None = None
    _overall: np.ndarray | None = None

    def fit(self, data: HeldOut) -> CategoryPrior:
        if data.pool_outcomes is None or data.pool_categories is None or data.categories is None:
            raise ValueError(
                "category prior needs the training pool's outcomes and every question's category"
            )
        pool = data.pool_outcomes
        everywhere = np.ones(len(pool), dtype=bool)
        self._overall = linked_means(pool, everywhere)
        common = ~np.isnan(pool).any(1)
        self._by_category = {}
        pool_categories = np.asarray(data.pool_categories).astype(str)  # None → "None": one category
        for c in np.unique(pool_categories):
            rows = pool_categories == c
            n = float((rows & common).sum())
            self._by_category[c] = (n * linked_means(pool, rows) + self.SHRINKAGE * self._overall) / (
                n + self.SHRINKAGE
            )
        return self

    def scores(self, data: HeldOut) -> np.ndarray:
        if self._by_category is None:
            self.fit(data)
        assert self._by_category is not None and self._overall is not None and data.categories is not None
        return np.stack(
            [self._by_category.get(c, self._overall) for c in np.asarray(data.categories).astype(str)]
        )


METHODS: dict[str, type[Method]] = {
    m.name: m for m in (Oracle, ModelSAT, BestSingle, CategoryPrior, KNN, MLP, MF, RandomChoice)
}
"""Every method by name, in report order."""

METHOD_ORDER: list[str] = list(METHODS)


def method_label(name: str) -> str:
    """The report label of a method name (the name itself for a method this version does not know)."""
    return METHODS[name].label if name in METHODS else name
