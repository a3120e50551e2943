"""Routing baselines in the same harness as Model-SAT.

Every baseline sees the same information: instruction embeddings (the frozen sentence encoder's, [n, d]) and an
outcome matrix [n, m] in which a model's unknown outcomes are NaN. Models seen in training have outcomes on the
whole training pool; models unseen in training have outcomes only on the aptitude items, exactly what Model-SAT
gets through their capability profiles.

Scale. Aptitude items are chosen to be distinguishing (about half the zoo answers them), so a predictor fit on
them alone is not on the scale of one fit on the whole pool: strong models look stronger on them. Each learned
baseline therefore has two predictors — a *full* one (seen models, every training instruction) and an
*aptitude-only* one (every model, aptitude items only) — and maps the aptitude-only scores of unseen models onto
the full scale with a linear map s_full ≈ α·s_apt + β fitted on the seen models' validation scores. Without
this, every baseline over-routes to unseen models.

- `knn`: mean outcome of the k most similar training instructions (cosine), k chosen on the validation split.
- `mlp`: an MLP from the instruction embedding to one logit per seen model (BCE); aptitude-only: logistic
  heads on the MLP's frozen hidden layer.
- `mf`: matrix factorisation in the style of RouteLLM/EmbedLLM: score = <W·x, e_m> + b_m (BCE); aptitude-only:
  (e_m, b_m) fit with W frozen, pulled towards the mean seen-model embedding.

Each predictor is the core of one learned method in `modelsat.methods` (`METHODS`), where random, best single
model and oracle live too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Baseline", "BaselineData", "KNNBaseline", "MFBaseline", "MLPBaseline"]


@dataclass
class BaselineData:
    """Training data of a baseline.

    Attributes:
        x: [n, d] instruction embeddings of the training pool.
        y: [n, m] outcomes in [0, 1]; NaN where a model's outcome is not known.
        x_val: [v, d] validation embeddings; y_val: [v, m] their outcomes (NaN allowed).
        seed: seed of initialisation and shuffling.
    """

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    seed: int = 0

    @property
    def full(self) -> np.ndarray:
        """[m] bool: models whose outcomes are known on every training instruction (seen models)."""
        return ~np.isnan(self.y).any(0)

    @property
    def aptitude_rows(self) -> np.ndarray:
        """[n] bool: instructions where every model's outcome is known (the aptitude items)."""
        return ~np.isnan(self.y).any(1)


def _routing_accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    return float(y[np.arange(len(y)), scores.argmax(1)].mean())


class Baseline:
    """A routing baseline: `fit` on `BaselineData`, then `predict` [b, m] scores (higher = better).

    Subclasses implement the full predictor (seen models) and the aptitude-only predictor (all models);
    this class puts unseen models on the full scale (see the module docstring).
    """

    name = "baseline"

    def _fit_full(self, data: BaselineData, seen: np.ndarray) -> None:
        raise NotImplementedError

    def _predict_full(self, x: np.ndarray) -> np.ndarray:
        """[b, len(seen)] scores of the seen models."""
        raise NotImplementedError

    def _fit_aptitude(self, data: BaselineData, rows: np.ndarray) -> None:
        raise NotImplementedError

    def _predict_aptitude(self, x: np.ndarray) -> np.ndarray:
        """[b, m] scores of every model from the aptitude items only."""
        raise NotImplementedError

    def fit(self, data: BaselineData) -> Baseline:
        self.m = data.y.shape[1]
        self.seen = np.flatnonzero(data.full)
        self.unseen = np.flatnonzero(~data.full)
        self._fit_full(data, self.seen)
        self.alpha, self.beta = 1.0, 0.0
        if len(self.unseen):
            self._fit_aptitude(data, np.flatnonzero(data.aptitude_rows))
            full = self._predict_full(data.x_val).ravel()
            apt = self._predict_aptitude(data.x_val)[:, self.seen].ravel()
            a, b = np.polyfit(apt, full, 1) if np.std(apt) > 1e-9 else (0.0, float(full.mean()))
            self.alpha, self.beta = float(a), float(b)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((x.shape[0], self.m), dtype=np.float32)
        out[:, self.seen] = self._predict_full(x)
        if len(self.unseen):
            out[:, self.unseen] = self.alpha * self._predict_aptitude(x)[:, self.unseen] + self.beta
        return out


class KNNBaseline(Baseline):
    """k-nearest-neighbour outcome averaging over instruction embeddings (cosine similarity)."""

    name = "knn"

    def __init__(self, ks: tuple[int, ...] = (10, 25, 50, 100, 200)) -> None:
        self.ks = ks
        self.k = ks[0]

    @staticmethod
    def _knn(x: np.ndarray, xs: np.ndarray, ys: np.ndarray, k: int) -> np.ndarray:
        k = min(k, len(xs))
        nn_idx = np.argpartition(-(x @ xs.T), k - 1, axis=1)[:, :k]
        return ys[nn_idx].mean(1)

    def _fit_full(self, data: BaselineData, seen: np.ndarray) -> None:
        self.x, self.y = data.x, data.y[:, seen]
        best = -1.0
        for k in self.ks:
            acc = _routing_accuracy(self._knn(data.x_val, self.x, self.y, k), data.y_val[:, seen])
            if acc > best:
                best, self.k = acc, k

    def _predict_full(self, x: np.ndarray) -> np.ndarray:
        return self._knn(x, self.x, self.y, self.k)

    def _fit_aptitude(self, data: BaselineData, rows: np.ndarray) -> None:
        self.x_apt, self.y_apt = data.x[rows], data.y[rows]

    def _predict_aptitude(self, x: np.ndarray) -> np.ndarray:
        return self._knn(x, self.x_apt, self.y_apt, self.k)


def _logistic_heads(
    feats: torch.Tensor, y: np.ndarray, dim: int, prior: torch.Tensor | None, steps: int = 300
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-model logistic heads ([m, dim] weights, [m] biases) on fixed features, L2 towards `prior`."""
    m = y.shape[1]
    ref = torch.zeros(1, dim) if prior is None else prior
    w = nn.Parameter(ref.expand(m, dim).clone())
    b = nn.Parameter(torch.zeros(m))
    target = torch.as_tensor(y, dtype=torch.float32)
    opt = torch.optim.Adam([w, b], lr=1e-2)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(feats @ w.T + b, target) + 1e-3 * ((w - ref) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach(), b.detach()


class _TorchBaseline(Baseline):
    """Shared training loop for the MLP and MF baselines: BCE on the seen models, best validation epoch kept."""

    epochs = 40
    lr = 1e-3
    batch = 128

    def _build(self, d: int, m: int) -> list[nn.Parameter]:
        raise NotImplementedError

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _fit_full(self, data: BaselineData, seen: np.ndarray) -> None:
        torch.manual_seed(data.seed)
        x, y = torch.as_tensor(data.x), torch.as_tensor(data.y[:, seen])
        params = self._build(x.shape[1], len(seen))
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=1e-5)
        gen = torch.Generator().manual_seed(data.seed)
        best, best_state = -1.0, None
        for epoch in range(self.epochs):
            self._train(True)
            for idx in torch.randperm(len(x), generator=gen).split(self.batch):
                loss = F.binary_cross_entropy_with_logits(self._head(self._features(x[idx])), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if epoch % 5 == 4 or epoch == self.epochs - 1:
                acc = _routing_accuracy(self._predict_full(data.x_val), data.y_val[:, seen])
                if acc > best:
                    best, best_state = acc, [p.detach().clone() for p in params]
        assert best_state is not None
        with torch.no_grad():
            for p, v in zip(params, best_state, strict=True):
                p.copy_(v)
        self._train(False)

    def _train(self, mode: bool) -> None:
        pass

    @torch.no_grad()
    def _predict_full(self, x: np.ndarray) -> np.ndarray:
        self._train(False)
        return self._head(self._features(torch.as_tensor(x))).numpy()

    def _prior(self) -> torch.Tensor | None:
        return None

    def _fit_aptitude(self, data: BaselineData, rows: np.ndarray) -> None:
        with torch.no_grad():
            feats = self._features(torch.as_tensor(data.x[rows]))
        self.w_apt, self.b_apt = _logistic_heads(feats, data.y[rows], feats.shape[1], self._prior())

    @torch.no_grad()
    def _predict_aptitude(self, x: np.ndarray) -> np.ndarray:
        return (self._features(torch.as_tensor(x)) @ self.w_apt.T + self.b_apt).numpy()


class MLPBaseline(_TorchBaseline):
    """MLP over instruction embeddings, one output per seen model (BCE)."""

    name = "mlp"

    def __init__(self, hidden: int = 256, epochs: int = 40, lr: float = 1e-3) -> None:
        self.hidden, self.epochs, self.lr = hidden, epochs, lr

    def _build(self, d: int, m: int) -> list[nn.Parameter]:
        self.body = nn.Sequential(nn.Linear(d, self.hidden), nn.GELU(), nn.Dropout(0.1))
        self.out = nn.Linear(self.hidden, m)
        return [*self.body.parameters(), *self.out.parameters()]

    def _train(self, mode: bool) -> None:
        self.body.train(mode)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h)


class MFBaseline(_TorchBaseline):
    """Matrix factorisation over (instruction, model): <W·x, e_m> + b_m (RouteLLM / EmbedLLM style)."""

    name = "mf"
    batch = 256

    def __init__(self, dim: int = 32, epochs: int = 60, lr: float = 3e-3) -> None:
        self.dim, self.epochs, self.lr = dim, epochs, lr

    def _build(self, d: int, m: int) -> list[nn.Parameter]:
        self.proj = nn.Linear(d, self.dim)
        self.emb = nn.Parameter(torch.randn(m, self.dim) * 0.1)
        self.bias = nn.Parameter(torch.zeros(m))
        return [*self.proj.parameters(), self.emb, self.bias]

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.emb.T + self.bias

    def _prior(self) -> torch.Tensor | None:
        return self.emb.detach().mean(0, keepdim=True)


"""Learned baselines by name (random, best single model and oracle are computed directly in `evaluate`)."""
