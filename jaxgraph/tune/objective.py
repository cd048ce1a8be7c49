"""What a search optimizes: a logged metric name and a direction."""

from __future__ import annotations

import re

_MINIMIZE = ("loss", "error", "mae", "mse", "mape", "msle", "rmse", "crossentropy", "hinge",
             "divergence", "kld", "poisson", "log_cosh", "logcosh", "huber")
_MAXIMIZE = ("acc", "accuracy", "auc", "precision", "recall", "f1", "iou", "top_k", "r2",
             "score")
_DIRECTIONS = {"min": "minimize", "minimize": "minimize", "max": "maximize",
               "maximize": "maximize"}


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", name.lower()) if t]


def infer_direction(name: str) -> str:
    """'minimize' for losses and errors, 'maximize' for accuracies, AUC, precision...

    Minimizing wins when both appear ('val_acc_loss' is a loss).
    """
    tokens = _tokens(name)
    joined = "_".join(tokens)
    if any(t in _MINIMIZE or t.endswith("loss") for t in tokens) or "error" in joined:
        return "minimize"
    if any(t in _MAXIMIZE or t.endswith("accuracy") for t in tokens) or "top_k" in joined:
        return "maximize"
    raise ValueError(
        f"Cannot tell whether objective {name!r} should be minimized or maximized; pass "
        f"direction='min' or 'max' (or tune.Objective({name!r}, 'max'))")


class Objective:
    """`Objective('val_auc', 'max')`: the metric a search optimizes and which way."""

    def __init__(self, name: str, direction: str | None = None):
        if not isinstance(name, str) or not name:
            raise ValueError(f"Objective name must be a non-empty string, got {name!r}")
        self.name = name
        self.direction = (infer_direction(name) if direction is None
                          else normalize_direction(direction))

    @property
    def minimize(self) -> bool:
        return self.direction == "minimize"

    def better(self, a: float, b: float | None) -> bool:
        """Whether score `a` beats `b` (None: nothing yet)."""
        if b is None:
            return True
        return a < b if self.minimize else a > b

    def __repr__(self):
        return f"Objective({self.name!r}, {self.direction!r})"

    def __eq__(self, other):
        return (isinstance(other, Objective) and other.name == self.name
                and other.direction == self.direction)

    def __hash__(self):
        return hash((self.name, self.direction))


def normalize_direction(direction: str) -> str:
    key = str(direction).lower()
    if key not in _DIRECTIONS:
        raise ValueError(f"Unknown direction {direction!r}; use 'min' / 'minimize' or "
                         "'max' / 'maximize'")
    return _DIRECTIONS[key]


def as_objective(objective, direction=None) -> Objective:
    if isinstance(objective, Objective):
        if direction is not None and normalize_direction(direction) != objective.direction:
            raise ValueError(f"direction={direction!r} contradicts {objective!r}")
        return objective
    if isinstance(objective, str):
        return Objective(objective, direction)
    raise TypeError(f"objective must be a metric name or a tune.Objective, got {objective!r}")
