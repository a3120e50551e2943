"""Routing baselines in the same harness as Model-SAT.

Every baseline sees the same information: instruction embeddings (the frozen sentence encoder's, [n, d]) and an
outcome matrix [n, m] in which a model's unknown outcomes are NaN. Models seen in training have outcomes on the
whole training pool; models unseen in training have outcomes only on the aptitude items, exactly what Model-SAT
gets through their capability profiles.

- `random`: the expected accuracy of a uniformly random candidate (scores are all equal; ties are averaged).
- `best_single`: always the model with the highest mean outcome on the training pool.
- `oracle`: the best candidate per instruction in hindsight (upper bound; uses the evaluation outcomes).
- `knn`: mean outcome of the k most similar training instructions (cosine), per model over the instructions
  where that model's outcome is known; k chosen on the validation split.
- `mlp`: an MLP from the instruction embedding to one logit per seen model (BCE); each unseen model gets a
  logistic head on the MLP's frozen hidden layer, fit on its known outcomes.
- `mf`: matrix factorisation in the style of RouteLLM/EmbedLLM: score = <W·x, e_m> + b_m, trained with BCE; an
  unseen model's (e_m, b_m) is fit on its known outcomes with W frozen, with L2 pull towards the mean of the
  seen models' embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BASELINES", "BaselineData", "Baseline", "KNNBaseline", "MFBaseline", "MLPBaseline"]


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
        """[m] bool: models whose outcomes are known on every training instruction."""
        return ~np.isnan(self.y).any(0)


class Baseline:
    """A routing baseline: `fit` on `BaselineData`, then `predict` [b, m] scores (higher = better)."""

    name = "baseline"

    def fit(self, data: BaselineData) -> Baseline:
        raise NotImplementedError

    def predict(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _val_routing_accuracy(scores: np.ndarray, y_val: np.ndarray) -> float:
    known = ~np.isnan(y_val).any(0)
    s, y = scores[:, known], y_val[:, known]
    return float(y[np.arange(len(y)), s.argmax(1)].mean())


class KNNBaseline(Baseline):
    """k-nearest-neighbour outcome averaging over instruction embeddings (cosine similarity)."""

    name = "knn"

    def __init__(self, ks: tuple[int, ...] = (10, 25, 50, 100, 200)) -> None:
        self.ks = ks
        self.k = ks[0]

    def _predict(self, x: np.ndarray, k: int) -> np.ndarray:
        out = np.zeros((x.shape[0], self.y.shape[1]), dtype=np.float32)
        sim = x @ self.x.T  # [b, n]
        for pattern in {tuple(col) for col in (~np.isnan(self.y)).T}:
            rows = np.flatnonzero(pattern)
            cols = [j for j in range(self.y.shape[1]) if tuple(~np.isnan(self.y[:, j])) == pattern]
            kk = min(k, len(rows))
            nn_idx = np.argpartition(-sim[:, rows], kk - 1, axis=1)[:, :kk]
            out[:, cols] = self.y[rows][nn_idx][:, :, cols].mean(1)
        return out

    def fit(self, data: BaselineData) -> KNNBaseline:
        self.x, self.y = data.x, data.y
        best = -1.0
        for k in self.ks:
            acc = _val_routing_accuracy(self._predict(data.x_val, k), data.y_val)
            if acc > best:
                best, self.k = acc, k
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._predict(x, self.k)


def _fit_unseen_heads(
    feats: torch.Tensor,
    y: np.ndarray,
    cols: list[int],
    dim: int,
    prior: torch.Tensor | None,
    steps: int = 300,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic heads ([len(cols), dim] weights, [len(cols)] biases) fit on each model's known outcomes."""
    w = nn.Parameter(torch.zeros(len(cols), dim) if prior is None else prior.expand(len(cols), dim).clone())
    b = nn.Parameter(torch.zeros(len(cols)))
    target = torch.as_tensor(y[:, cols], dtype=torch.float32)
    known = ~torch.isnan(target)
    target = torch.nan_to_num(target)
    opt = torch.optim.Adam([w, b], lr=1e-2)
    for _ in range(steps):
        logits = feats @ w.T + b
        loss = (
            F.binary_cross_entropy_with_logits(logits, target, reduction="none") * known
        ).sum() / known.sum()
        ref = torch.zeros_like(w) if prior is None else prior.expand_as(w)
        loss = loss + 1e-3 * ((w - ref) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach(), b.detach()


class MLPBaseline(Baseline):
    """MLP over instruction embeddings, one output per seen model (BCE); unseen models via logistic heads."""

    name = "mlp"

    def __init__(self, hidden: int = 256, epochs: int = 40, lr: float = 1e-3) -> None:
        self.hidden, self.epochs, self.lr = hidden, epochs, lr

    def fit(self, data: BaselineData) -> MLPBaseline:
        torch.manual_seed(data.seed)
        full = np.flatnonzero(data.full)
        self.cols_seen, self.cols_unseen = full.tolist(), np.flatnonzero(~data.full).tolist()
        x = torch.as_tensor(data.x)
        rows = np.flatnonzero(~np.isnan(data.y[:, full]).any(1))
        y = torch.as_tensor(data.y[np.ix_(rows, full)])
        xr = x[rows]
        self.body = nn.Sequential(nn.Linear(x.shape[1], self.hidden), nn.GELU(), nn.Dropout(0.1))
        self.head = nn.Linear(self.hidden, len(full))
        opt = torch.optim.Adam(
            [*self.body.parameters(), *self.head.parameters()], lr=self.lr, weight_decay=1e-5
        )
        gen = torch.Generator().manual_seed(data.seed)
        best, best_state = -1.0, None
        for epoch in range(self.epochs):
            self.body.train()
            for idx in torch.randperm(len(rows), generator=gen).split(128):
                loss = F.binary_cross_entropy_with_logits(self.head(self.body(xr[idx])), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if epoch % 5 == 4 or epoch == self.epochs - 1:
                self.body.eval()
                with torch.no_grad():
                    acc = _val_routing_accuracy(
                        self.head(self.body(torch.as_tensor(data.x_val))).numpy(), data.y_val[:, full]
                    )
                if acc > best:
                    best = acc
                    best_state = (
                        {k: v.clone() for k, v in self.body.state_dict().items()},
                        {k: v.clone() for k, v in self.head.state_dict().items()},
                    )
        assert best_state is not None
        self.body.load_state_dict(best_state[0])
        self.head.load_state_dict(best_state[1])
        self.body.eval()
        if self.cols_unseen:
            with torch.no_grad():
                feats = self.body(x)
            self.w_u, self.b_u = _fit_unseen_heads(feats, data.y, self.cols_unseen, self.hidden, None)
        self.m = data.y.shape[1]
        return self

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        h = self.body(torch.as_tensor(x))
        out = np.zeros((x.shape[0], self.m), dtype=np.float32)
        out[:, self.cols_seen] = self.head(h).numpy()
        if self.cols_unseen:
            out[:, self.cols_unseen] = (h @ self.w_u.T + self.b_u).numpy()
        return out


class MFBaseline(Baseline):
    """Matrix factorisation over (instruction, model): <W·x, e_m> + b_m (RouteLLM / EmbedLLM style)."""

    name = "mf"

    def __init__(self, dim: int = 32, epochs: int = 60, lr: float = 3e-3) -> None:
        self.dim, self.epochs, self.lr = dim, epochs, lr

    def fit(self, data: BaselineData) -> MFBaseline:
        torch.manual_seed(data.seed)
        full = np.flatnonzero(data.full)
        self.cols_seen, self.cols_unseen = full.tolist(), np.flatnonzero(~data.full).tolist()
        x = torch.as_tensor(data.x)
        rows = np.flatnonzero(~np.isnan(data.y[:, full]).any(1))
        y = torch.as_tensor(data.y[np.ix_(rows, full)])
        xr = x[rows]
        self.proj = nn.Linear(x.shape[1], self.dim)
        self.emb = nn.Parameter(torch.randn(len(full), self.dim) * 0.1)
        self.bias = nn.Parameter(torch.zeros(len(full)))
        opt = torch.optim.Adam([*self.proj.parameters(), self.emb, self.bias], lr=self.lr, weight_decay=1e-5)
        gen = torch.Generator().manual_seed(data.seed)
        best, best_state = -1.0, None
        for epoch in range(self.epochs):
            for idx in torch.randperm(len(rows), generator=gen).split(256):
                loss = F.binary_cross_entropy_with_logits(self.proj(xr[idx]) @ self.emb.T + self.bias, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if epoch % 5 == 4 or epoch == self.epochs - 1:
                with torch.no_grad():
                    s = (self.proj(torch.as_tensor(data.x_val)) @ self.emb.T + self.bias).numpy()
                acc = _val_routing_accuracy(s, data.y_val[:, full])
                if acc > best:
                    best = acc
                    best_state = (
                        {k: v.clone() for k, v in self.proj.state_dict().items()},
                        self.emb.detach().clone(),
                        self.bias.detach().clone(),
                    )
        assert best_state is not None
        self.proj.load_state_dict(best_state[0])
        self.emb_seen, self.bias_seen = best_state[1], best_state[2]
        if self.cols_unseen:
            with torch.no_grad():
                feats = self.proj(x)
            self.emb_u, self.bias_u = _fit_unseen_heads(
                feats, data.y, self.cols_unseen, self.dim, self.emb_seen.mean(0, keepdim=True)
            )
        self.m = data.y.shape[1]
        return self

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        h = self.proj(torch.as_tensor(x))
        out = np.zeros((x.shape[0], self.m), dtype=np.float32)
        out[:, self.cols_seen] = (h @ self.emb_seen.T + self.bias_seen).numpy()
        if self.cols_unseen:
            out[:, self.cols_unseen] = (h @ self.emb_u.T + self.bias_u).numpy()
        return out


BASELINES: dict[str, type[Baseline]] = {"knn": KNNBaseline, "mlp": MLPBaseline, "mf": MFBaseline}
"""Learned baselines by name (random, best single model and oracle are computed directly in `evaluate`)."""
