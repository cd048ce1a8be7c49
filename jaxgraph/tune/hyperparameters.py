"""Define-by-run hyperparameters with KerasTuner's spelling.

`build_fn(hp)` asks for values (`hp.Int('units', 32, 512, step=32)`) while it builds
the model; the search space is whatever it asked for. During a search each call is
answered by an Optuna trial (so Optuna's samplers and pruners see a normal trial);
outside a search (`HyperParameters(values={...})`) calls return the given value or
the default, which is how best models are rebuilt.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

_SAMPLINGS = ("linear", "log")
_METHODS = ("Int", "Float", "Choice", "Boolean", "Fixed", "conditional_scope", "get", "report",
            "values", "space", "is_active")
_CHOICE_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class Param:
    """One dimension of the space: its kind, bounds or values, and its default."""

    name: str
    kind: str  # 'int' | 'float' | 'choice' | 'boolean' | 'fixed'
    min_value: Any = None
    max_value: Any = None
    step: Any = None
    sampling: str = "linear"
    values: tuple = ()
    default: Any = None
    conditions: tuple = ()  # ((parent name, allowed values), ...)

    @property
    def tunable(self) -> bool:
        return self.kind != "fixed"

    def describe(self) -> str:
        if self.kind in ("int", "float"):
            extra = f", step={self.step}" if self.step is not None else ""
            return (f"{self.kind} [{self.min_value}, {self.max_value}]{extra}, "
                    f"sampling={self.sampling}")
        if self.kind in ("choice", "boolean"):
            return f"{self.kind} {list(self.values)}"
        return f"fixed {self.default!r}"

    def contains(self, value) -> bool:
        if self.kind == "fixed":
            return value == self.default
        if self.kind in ("choice", "boolean"):
            return value in self.values
        return self.min_value <= value <= self.max_value


def _check_name(name) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"A hyperparameter name must be a non-empty string, got {name!r}")
    return name


def _check_sampling(name, sampling, min_value) -> str:
    if sampling is None:
        sampling = "linear"
    sampling = str(sampling).lower()
    if sampling not in _SAMPLINGS:
        raise ValueError(f"Hyperparameter {name!r}: unknown sampling {sampling!r}; "
                         f"use one of {list(_SAMPLINGS)}")
    if sampling == "log" and min_value <= 0:
        raise ValueError(f"Hyperparameter {name!r}: sampling='log' needs min_value > 0, "
                         f"got {min_value}")
    return sampling


def _check_bounds(name, min_value, max_value, kind):
    for label, v in (("min_value", min_value), ("max_value", max_value)):
        ok = isinstance(v, int) if kind == "int" else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok or (kind == "float" and not math.isfinite(v)):
            raise ValueError(f"Hyperparameter {name!r}: {label} must be a finite "
                             f"{'int' if kind == 'int' else 'number'}, got {v!r}")
    if min_value > max_value:
        raise ValueError(f"Hyperparameter {name!r}: min_value ({min_value}) is greater than "
                         f"max_value ({max_value})")


class HyperParameters:
    """The `hp` handed to `build_fn`: declares and answers hyperparameters.

    `HyperParameters()` answers every call with its default; `values={...}` pins
    some of them (rebuilding a trial); a tuner binds it to an Optuna trial.
    """

    def __init__(self, values: dict | None = None, trial=None):
        self._fixed_values = dict(values or {})
        self._trial = trial
        self._space: dict[str, Param] = {}
        self._values: dict[str, Any] = {}
        self._conditions: list[tuple[str, tuple]] = []

    # ------------------------------------------------------------------ reading

    @property
    def values(self) -> dict:
        """Values of the active hyperparameters asked for so far."""
        return dict(self._values)

    @property
    def space(self) -> list[Param]:
        """Every hyperparameter declared so far (Fixed ones included)."""
        return list(self._space.values())

    def get(self, name: str):
        if name in self._values:
            return self._values[name]
        if name in self._space:
            return None  # declared but inactive (its condition does not hold)
        raise KeyError(f"Hyperparameter {name!r} was not defined; defined so far: "
                       f"{sorted(self._space)}")

    def __getitem__(self, name: str):
        return self.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(
            f"HyperParameters has no method {name!r}; available: {list(_METHODS)}")

    def __repr__(self):
        return f"HyperParameters({self._values!r})"

    # ------------------------------------------------------------------ conditions

    @contextlib.contextmanager
    def conditional_scope(self, parent_name: str, parent_values):
        """Hyperparameters declared inside are active only when `parent_name` takes one of
        `parent_values`; when inactive they are not sampled and return None."""
        if parent_name not in self._space:
            raise ValueError(f"conditional_scope: parent hyperparameter {parent_name!r} must be "
                             f"defined before the scope; defined so far: {sorted(self._space)}")
        if not isinstance(parent_values, (list, tuple, set)):
            parent_values = [parent_values]
        parent_values = tuple(parent_values)
        parent = self._space[parent_name]
        bad = [v for v in parent_values if not parent.contains(v)]
        if bad:
            raise ValueError(f"conditional_scope: {bad} are not possible values of "
                             f"{parent_name!r} ({parent.describe()})")
        self._conditions.append((parent_name, parent_values))
        try:
            yield
        finally:
            self._conditions.pop()

    def is_active(self, param: Param | str) -> bool:
        conditions = (self._space[param].conditions if isinstance(param, str)
                      else param.conditions)
        for parent, allowed in conditions:
            if parent not in self._values or self._values[parent] not in allowed:
                return False
        return True

    # ------------------------------------------------------------------ declaring

    def Int(self, name, min_value, max_value, step=1, sampling="linear", default=None,
            parent_name=None, parent_values=None):
        """An integer in [min_value, max_value] (both included), on a grid of `step`."""
        name = _check_name(name)
        _check_bounds(name, min_value, max_value, "int")
        if step is None:
            step = 1
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f"Hyperparameter {name!r}: step must be an int >= 1, got {step!r}")
        sampling = _check_sampling(name, sampling, min_value)
        if sampling == "log" and step != 1:
            raise ValueError(f"Hyperparameter {name!r}: sampling='log' needs step=1 "
                             f"(Optuna cannot combine both), got step={step}")
        max_value = min_value + (max_value - min_value) // step * step
        default = min_value if default is None else default
        param = Param(name, "int", min_value, max_value, step, sampling, default=default)
        return self._declare(param, parent_name, parent_values)

    def Float(self, name, min_value, max_value, step=None, sampling="linear", default=None,
              parent_name=None, parent_values=None):
        """A float in [min_value, max_value]; `sampling='log'` for scales like rates."""
        name = _check_name(name)
        _check_bounds(name, min_value, max_value, "float")
        sampling = _check_sampling(name, sampling, min_value)
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
                raise ValueError(f"Hyperparameter {name!r}: step must be > 0, got {step!r}")
            if sampling == "log":
                raise ValueError(f"Hyperparameter {name!r}: sampling='log' cannot have a step "
                                 "(Optuna cannot combine both)")
            step = float(step)
        default = float(min_value) if default is None else float(default)
        param = Param(name, "float", float(min_value), float(max_value), step, sampling,
                      default=default)
        return self._declare(param, parent_name, parent_values)

    def Choice(self, name, values, ordered=None, default=None, parent_name=None,
               parent_values=None):
        """One of `values` (bools, ints, floats or strings)."""
        name = _check_name(name)
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise ValueError(f"Hyperparameter {name!r}: values must be a list, got {values!r}")
        values = tuple(values)
        if not values:
            raise ValueError(f"Hyperparameter {name!r}: Choice needs at least one value")
        bad = [v for v in values if not isinstance(v, _CHOICE_TYPES)]
        if bad:
            raise ValueError(f"Hyperparameter {name!r}: Choice values must be bool, int, float "
                             f"or str (stored by Optuna), got {bad}")
        if len(set(map(repr, values))) != len(values):
            raise ValueError(f"Hyperparameter {name!r}: Choice values repeat: {list(values)}")
        default = values[0] if default is None else default
        if default not in values:
            raise ValueError(f"Hyperparameter {name!r}: default {default!r} is not one of "
                             f"{list(values)}")
        param = Param(name, "choice", values=values, default=default)
        return self._declare(param, parent_name, parent_values)

    def Boolean(self, name, default=False, parent_name=None, parent_values=None):
        name = _check_name(name)
        param = Param(name, "boolean", values=(False, True), default=bool(default))
        return self._declare(param, parent_name, parent_values)

    def Fixed(self, name, value, parent_name=None, parent_values=None):
        """A constant recorded with the trial (not searched)."""
        name = _check_name(name)
        if value is not None and not isinstance(value, _CHOICE_TYPES):
            raise ValueError(f"Hyperparameter {name!r}: Fixed value must be None, bool, int, "
                             f"float or str, got {value!r}")
        return self._declare(Param(name, "fixed", default=value), parent_name, parent_values)

    # ------------------------------------------------------------------ machinery

    def _declare(self, param: Param, parent_name, parent_values):
        if parent_name is not None:
            with self.conditional_scope(parent_name, parent_values):
                return self._declare(param, None, None)
        conditions = tuple(self._conditions)
        param = Param(**{**param.__dict__, "conditions": conditions})
        old = self._space.get(param.name)
        if old is not None:
            same = Param(**{**old.__dict__, "conditions": conditions}) == param
            if not same:
                raise ValueError(
                    f"Hyperparameter {param.name!r} is declared twice with different "
                    f"definitions: {old.describe()} and then {param.describe()}")
            if param.name in self._values:
                return self._values[param.name]
        self._space[param.name] = param
        if not self.is_active(param):
            return None
        value = self._answer(param)
        self._values[param.name] = value
        return value

    def _answer(self, param: Param):
        if param.kind == "fixed":
            if self._trial is not None:
                self._trial.set_user_attr(f"fixed:{param.name}", param.default)
            return param.default
        if param.name in self._fixed_values:
            value = self._fixed_values[param.name]
            if not param.contains(value):
                raise ValueError(f"Hyperparameter {param.name!r}: given value {value!r} is "
                                 f"outside its space ({param.describe()})")
            return value
        if self._trial is None:
            return param.default
        t = self._trial
        if param.kind == "int":
            return t.suggest_int(param.name, param.min_value, param.max_value, step=param.step,
                                 log=param.sampling == "log")
        if param.kind == "float":
            return t.suggest_float(param.name, param.min_value, param.max_value,
                                   step=param.step, log=param.sampling == "log")
        return t.suggest_categorical(param.name, list(param.values))

    # ------------------------------------------------------------------ reporting

    def report(self, value: float, step: int) -> None:
        """For plain objectives: report an intermediate value; raises optuna.TrialPruned
        when the tuner's pruner says the trial is hopeless (no-op outside a search)."""
        if self._trial is None:
            return
        import optuna

        self._trial.report(float(value), int(step))
        if self._trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step} (value {value})")
