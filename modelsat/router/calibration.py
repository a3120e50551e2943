"""Platt calibration of router scores: p(correct) = sigmoid(a·score + b), fitted and applied.

Router scores are logits of unbounded range. `fit_calibration` fits (a, b) on the validation split once per
checkpoint (`modelsat.pipeline.finalize_training` stores them as `RouterConfig.score_scale/score_bias`), and
`platt_probabilities` turns scores into calibrated probabilities with them (`Router.probabilities`, for
cost-aware routing). The only place the Platt sigmoid is written.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["fit_calibration", "platt_probabilities"]


def fit_calibration(scores: np.ndarray, outcomes: np.ndarray, steps: int = 200) -> tuple[float, float]:
    """Platt scaling: (a, b) minimising the log-loss of sigmoid(a·score + b) against outcomes.

    Args:
        scores: [n] router scores. outcomes: [n] targets in [0, 1].
    Returns:
        (scale a > 0, bias b).
    """
    s = torch.as_tensor(scores, dtype=torch.float64)
    y = torch.as_tensor(outcomes, dtype=torch.float64)
    params = torch.tensor([0.0, 0.0], dtype=torch.float64, requires_grad=True)  # log a, b
    opt = torch.optim.LBFGS([params], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(params[0].exp() * s + params[1], y)
        loss.backward()
        return loss

    opt.step(closure)
    a, b = float(params[0].detach().exp()), float(params[1].detach())
    if not (math.isfinite(a) and math.isfinite(b)):
        return 1.0, 0.0
    return a, b


def platt_probabilities(scores: np.ndarray, scale: float, bias: float) -> np.ndarray:
    """Calibrated p(correct) = sigmoid(scale·score + bias) for router scores, elementwise.

    Args:
        scores: router scores (logits), any shape. scale, bias: the Platt parameters (`fit_calibration`).
    Returns:
        Probabilities in [0, 1], the shape of `scores`.
    """
    return 1.0 / (1.0 + np.exp(-(scale * scores + bias)))
