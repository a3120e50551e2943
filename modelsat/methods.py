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


class CategoryPrior(Method):
    """The best model per category, chosen on the training pool (RouterEval's and LLMRouterBench's strong
    trivial baseline: routers mostly learn per-category trends).

    A model's estimate in category c is its mean outcome on the pool's questions of c, shrunk toward its mean
    on the whole pool: (Σ_c y + k·ȳ) / (n_c + k), with k = `SHRINKAGE` pseudo-questions; an unseen model counts
    only its aptitude items (what the router knew of it). Categories absent from the pool fall back to ȳ.
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
        y, known = np.nan_to_num(data.pool_outcomes), ~np.isnan(data.pool_outcomes)
        n_all = known.sum(0)
        self._overall = np.where(n_all > 0, y.sum(0) / np.maximum(n_all, 1), 0.0)
        self._by_category = {}
        pool_categories = np.asarray(data.pool_categories).astype(str)  # None → "None": one category
        for c in np.unique(pool_categories):
            rows = pool_categories == c
            s, n = y[rows].sum(0), known[rows].sum(0)
            self._by_category[c] = (s + self.SHRINKAGE * self._overall) / (n + self.SHRINKAGE)
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
