"""What EarlyStopping, ModelCheckpoint and ReduceLROnPlateau share: reading a
monitored value from the logs and deciding whether it improved.

Keras 2 logged `acc`, Keras 3 logs `accuracy`; code written for either should
work, so a monitor that is absent from the logs falls back to its alias.

In mode 'auto' the direction comes from what was compiled, as in Keras 3: the
loss is minimized, a compiled metric goes the way it declares (accuracies, AUC,
precision... up; errors and crossentropies down), and anything else is an error
at train begin rather than a guess from the name that could silently keep the
worst model. Unlike Keras 3, which matches the metric objects' own names, the
match is on the logged names, so per-output metrics and losses of a multi-output
model (`answer_accuracy`, `val_answer_loss`) are understood too.
"""

from __future__ import annotations

import warnings

import numpy as np


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


def _wraps_a_loss(fn) -> bool:
    """Keras's MeanMetricWrapper test: a loss object, class or built-in loss function."""
    from ..training import losses as losses_mod

    if isinstance(fn, losses_mod.Loss) or (isinstance(fn, type)
                                            and issubclass(fn, losses_mod.Loss)):
        return True
    return any(fn is f for f in losses_mod._FUNCTIONS.values())


def metric_direction(metric) -> str | None:
    """'up', 'down' or None: what `metric` declares (Keras's `_direction`).

    A mean over a plain function declares nothing, unless that function is a loss,
    as in Keras: `metrics=[my_fn]` cannot be monitored in mode 'auto'.
    """
    from ..training import metrics as metrics_mod

    own = vars(metric) if hasattr(metric, "__dict__") else {}
    for attr in ("direction", "_direction"):  # set on the instance (Keras's spelling too)
        if own.get(attr) in ("up", "down"):
            return own[attr]
    if isinstance(metric, metrics_mod.MeanMetricWrapper):
        for klass in type(metric).__mro__:
            if klass is metrics_mod.MeanMetricWrapper:
                return "down" if _wraps_a_loss(metric._wrapped) else None
            if vars(klass).get("direction") in ("up", "down"):  # a subclass that declares it
                return vars(klass)["direction"]
    for attr in ("direction", "_direction"):
        value = getattr(metric, attr, None)
        if value in ("up", "down"):
            return value
    return None


def _compiled(model) -> tuple[list, set]:
    """The compiled metrics as (logged name, metric), and the per-output loss names."""
    objective = getattr(getattr(model, "_trainer", None), "objective", None)
    if objective is not None:
        losses = {objective.loss_log_name(i) for i, fn in enumerate(objective.loss_fns)
                  if fn is not None} if objective.multi else set()
        return [(name, metric) for _, metric, name, _ in objective.metrics], losses
    try:  # a Keras-like model that lists its metric objects
        metrics = list(getattr(model, "metrics", None) or [])
    except Exception:  # a Keras model that is not compiled yet
        metrics = []
    return [(getattr(m, "name", None), m) for m in metrics], set()


def infer_direction(model, monitor: str) -> str | None:
    """'down' for a loss, the compiled metric's own direction, else None."""
    base = monitor[4:] if monitor.startswith("val_") else monitor
    if base == "loss":
        return "down"
    metrics, losses = _compiled(model) if model is not None else ([], set())
    for name in (base, alias_of(base)):
        if name is None:
            continue
        if name in losses:
            return "down"
        found = [metric for logged, metric in metrics if logged == name]
        if found:
            return metric_direction(found[-1])
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

    def resolve(self, model=None, owner: str | None = None) -> None:
        """Fix the direction in mode 'auto', or raise Keras's ValueError when nothing
        compiled says which way `monitor` is better."""
        if self._maximize is not None:
            return
        direction = infer_direction(model, self.monitor)
        if direction is None:
            raise ValueError(
                f"{owner or self.owner} callback received monitor={self.monitor}, but "
                "jaxgraph isn't able to automatically determine whether that metric should "
                "be maximized or minimized (it is neither the loss nor a compiled metric "
                "that declares a direction). Pass `mode='max'` in order to monitor based "
                "on the highest metric value, or pass `mode='min'` in order to use the "
                "lowest value."
            )
        self._maximize = direction == "up"

    @property
    def maximize(self) -> bool:
        self.resolve()
        return self._maximize

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
