"""What EarlyStopping, ModelCheckpoint and ReduceLROnPlateau share: reading a
monitored value from the logs and deciding whether it improved.

Keras 2 logged `acc`, Keras 3 logs `accuracy`; code written for either should
work, so a monitor that is absent from the logs falls back to its alias.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

# Metric names for which bigger is better (after stripping 'val_' and an output prefix).
_MAXIMIZED = ("acc", "accuracy", "auc", "precision", "recall", "f1_score", "fbeta_score",
              "iou", "r2_score", "fmeasure")


def alias_of(key: str) -> str | None:
    """`acc` <-> `accuracy` (also with `val_` / output prefixes), `lr` <-> `learning_rate`."""
    if key.endswith("accuracy"):
        return key[: -len("accuracy")] + "acc"
    if key.endswith("acc"):
        return key + "uracy"
    if key in ("lr", "learning_rate"):
        return "learning_rate" if key == "lr" else "lr"
    return None


def monitored_value(logs, monitor: str):
    """The value of `monitor` (or of its alias) as a float, or None if neither was logged."""
    if not logs:
        return None
    for key in (monitor, alias_of(monitor)):
        if key is not None and key in logs:
            value = logs[key]
            return None if value is None else float(value)
    return None


def warn_missing(owner: str, monitor: str, logs, what: str = "conditioned on") -> None:
    available = ", ".join(sorted(logs.keys())) if logs else "(none)"
    warnings.warn(
        f"{owner} {what} metric `{monitor}` which is not available. "
        f"Available metrics are: {available}",
        stacklevel=3,
    )


def _is_maximized(name: str) -> bool:
    base = name[4:] if name.startswith("val_") else name
    if base == "loss" or base.endswith("_loss"):
        return False
    return any(base == m or base.endswith("_" + m) for m in _MAXIMIZED) or base.startswith(
        ("top_k", "sparse_top_k")) or "_top_k_" in base


def _direction_from_model(model, name: str) -> str | None:
    """The compiled metric's own `direction` ('up'/'down'), when the model exposes it."""
    base = name[4:] if name.startswith("val_") else name
    try:
        metrics = list(getattr(model, "metrics", None) or [])
    except Exception:  # a model that is not compiled yet
        return None
    for metric in metrics:
        if getattr(metric, "name", None) in (base, alias_of(base)):
            direction = getattr(metric, "direction", None)
            if direction in ("up", "down"):
                return direction
    return None


class Monitor:
    """A monitored quantity with a direction and a minimum change that counts."""

    def __init__(self, owner: str, monitor: str, mode: str = "auto", min_delta: float = 0.0):
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{owner} mode {mode!r} is unknown, falling back to 'auto'.",
                          stacklevel=3)
            mode = "auto"
        self.owner = owner
        self.monitor = monitor
        self.mode = mode
        self.min_delta = abs(float(min_delta))
        self._maximize: bool | None = None if mode == "auto" else mode == "max"

    def resolve(self, model=None) -> None:
        """Fix the direction in mode 'auto' (from the model's metrics, else from the name)."""
        if self._maximize is not None:
            return
        direction = _direction_from_model(model, self.monitor) if model is not None else None
        self._maximize = direction == "up" if direction else _is_maximized(self.monitor)

    @property
    def maximize(self) -> bool:
        self.resolve()
        return self._maximize

    @property
    def worst(self) -> float:
        return -math.inf if self.maximize else math.inf

    def improved(self, current: float, reference: float | None) -> bool:
        """Whether `current` beats `reference` by more than `min_delta` (None: always)."""
        if reference is None:
            return True
        # Keras compares in float32 (its ops cast Python floats to floatx), so a change
        # of exactly `min_delta` between float32 metric values does not count; float64
        # would judge it by the values' rounding errors.
        if self.maximize:
            return bool(np.float32(current - self.min_delta) > np.float32(reference))
        return bool(np.float32(current + self.min_delta) < np.float32(reference))

    def value(self, logs, warn: bool = True, what: str = "conditioned on"):
        current = monitored_value(logs, self.monitor)
        if current is None and warn:
            warn_missing(self.owner, self.monitor, logs, what)
        return current
