"""Hyperparameter search with KerasTuner's spelling, on Optuna; and vmapped populations.

`RandomSearch` / `TPESearch(build_fn, objective='val_loss', max_trials=...)` run
`build_fn(hp)` per trial (`hp.Int`, `hp.Float`, `hp.Choice`, `hp.Boolean`,
`hp.Fixed`, `hp.conditional_scope`), with Optuna's samplers, pruners and SQLite
storage (resumable with `directory=`). `train_population` trains many settings of
the continuous hyperparameters of one architecture as one compiled program.
"""

from .hyperparameters import HyperParameters, Param
from .objective import Objective, infer_direction
from .population import Population, train_population
from .tuner import RandomSearch, TPESearch, Tuner

__all__ = [
    "HyperParameters",
    "Objective",
    "Param",
    "Population",
    "RandomSearch",
    "TPESearch",
    "Tuner",
    "infer_direction",
    "train_population",
]
