"""What `compile` resolves: one loss and metric list per output, and their log names.

The multi-loss objective is `sum_i loss_weights[i] * loss_i + regularization`, with
the loss weights held as an array in the training state so they can change during
training without recompiling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import losses as losses_mod
from . import metrics as metrics_mod


@dataclass
class Objective:
    output_names: list[str]
    loss_fns: list  # per output: callable (y_true, y_pred) -> per-sample loss, or None
    loss_weights: np.ndarray
    metrics: list = field(default_factory=list)  # (output index, Metric, log name, weighted)

    @property
    def multi(self) -> bool:
        return len(self.output_names) > 1

    def loss_log_name(self, i: int) -> str:
        return f"{self.output_names[i]}_loss"

    def log_names(self) -> list[str]:
        names = ["loss"]
        if self.multi:
            names += [self.loss_log_name(i) for i, f in enumerate(self.loss_fns) if f is not None]
        names += [name for _, _, name, _ in self.metrics]
        return names


def _per_output(spec, names: list[str], what: str, allow_missing: bool):
    """Broadcast a single spec, or match a list/dict spec to the outputs."""
    n = len(names)
    if isinstance(spec, dict):
        unknown = [k for k in spec if k not in names]
        if unknown:
            raise ValueError(
                f"{what} has key(s) {unknown} that match no output; the model's outputs "
                f"are {names}"
            )
        missing = [k for k in names if k not in spec]
        if missing and not allow_missing:
            raise ValueError(f"{what} is missing output(s) {missing}; outputs are {names}")
        return [spec.get(k) for k in names]
    if isinstance(spec, (list, tuple)):
        if len(spec) != n:
            raise ValueError(
                f"{what} has {len(spec)} entries, but the model has {n} output(s): {names}"
            )
        return list(spec)
    return [spec] * n


def build_objective(model, loss, loss_weights, metrics, weighted_metrics=None) -> Objective:
    names = model.output_names
    if loss is None:
        loss_fns = [None] * len(names)
    else:
        loss_fns = [None if s is None else losses_mod.get(s)
                    for s in _per_output(loss, names, "loss", allow_missing=True)]
        left_out = [k for k in names if isinstance(loss, dict) and k not in loss]
        if left_out:
            # Keras 2 warned, Keras 3 raises; an explicit None says "no loss" silently.
            import warnings

            warnings.warn(
                f"Model {model.name!r}: the loss dict has no entry for output(s) {left_out}, "
                "so they are not trained and their targets are ignored. Give them a loss, or "
                "None to say so explicitly.", stacklevel=3)
    if loss_weights is None:
        weights = [1.0] * len(names)
    else:
        weights = [1.0 if w is None else float(w)
                   for w in _per_output(loss_weights, names, "loss_weights", allow_missing=True)]
    objective = Objective(names, loss_fns, np.asarray(weights, np.float32))
    for spec, weighted in ((metrics, False), (weighted_metrics, True)):
        if not spec:
            continue
        if isinstance(spec, dict) or (
                isinstance(spec, (list, tuple)) and len(names) > 1 and len(spec) == len(names)
                and all(isinstance(m, (list, tuple)) or m is None for m in spec)):
            per = _per_output(spec, names, "metrics", allow_missing=True)
        else:
            if isinstance(spec, (str,)) or callable(spec) and not isinstance(spec, (list, tuple)):
                spec = [spec]
            per = [list(spec)] * len(names)
        for i, entry in enumerate(per):
            if entry is None:
                continue
            entry = entry if isinstance(entry, (list, tuple)) else [entry]
            out_shape = model.outputs[i].shape
            for m in entry:
                metric = metrics_mod.get(m, loss=loss_fns[i], output_shape=out_shape)
                base = metric.name
                if weighted:
                    base = f"weighted_{base}"
                log = f"{names[i]}_{base}" if len(names) > 1 else base
                objective.metrics.append((i, metric, log, weighted))
    taken = set()
    for _, _, log, _ in objective.metrics:
        if log in taken:
            raise ValueError(f"Two metrics would both be logged as {log!r}; give one a name=")
        taken.add(log)
    return objective
