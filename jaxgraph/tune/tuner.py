"""RandomSearch and TPESearch: KerasTuner's Tuner interface over an Optuna study.

Optuna is the oracle (it samples, prunes and stores trials); the tuner runs them:
`build_fn(hp)` returns a compiled model, which is fit with a callback that reports
the objective every epoch (`trial.report`) and stops hopeless trials
(`trial.should_prune` -> `optuna.TrialPruned`). `build_fn` may instead return a
number: that is the trial's score (a plain `objective(hp) -> float`), which makes
cheap searches and tests possible.

Trained models are kept, with the weights of their best epoch (the one that gave the
score): in memory, and also on disk under `directory/project_name/` when a
directory is given, so `get_best_models` of a resumed search finds them too.
"""

from __future__ import annotations

import math
import numbers
import os
import shutil
import time
import warnings

import numpy as np

from ..callbacks.base import Callback
from .hyperparameters import HyperParameters
from .objective import as_objective

_STATUSES = ("COMPLETE", "PRUNED", "FAILED", "RUNNING", "WAITING")


def _status(trial) -> str:
    """Optuna's state name, with FAIL spelled FAILED."""
    return "FAILED" if trial.state.name == "FAIL" else trial.state.name


def _optuna():
    import optuna

    return optuna


class _TrialReporter(Callback):
    """Reports the objective each epoch, prunes, and remembers the best epoch's weights."""

    _lazy_logs = True  # reads logs through the lazy view (base.Logs)

    def __init__(self, trial, objective, earlier_scores: list, execution: int):
        super().__init__()
        self.trial = trial
        self.objective = objective
        self.earlier = earlier_scores  # scores of this trial's finished executions
        self.execution = execution
        self.step_offset = 0
        self.best = None
        self.best_variables = None
        self.epochs = 0
        self.seen_keys: list[str] = []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.epochs += 1
        self.seen_keys = list(logs)
        name = self.objective.name
        if name not in logs:
            val_epoch = any(k.startswith("val_") for k in logs)
            if not name.startswith("val_") or val_epoch:
                raise ValueError(_missing_message(name, list(logs)))
            return  # no validation this epoch (validation_freq > 1)
        value = float(logs[name])
        if not math.isfinite(value):
            value = math.inf if self.objective.minimize else -math.inf
        if self.objective.better(value, self.best):
            self.best = value
            self.best_variables = self.model.variables
        if self.trial is not None:
            step = self.step_offset + epoch
            self.trial.report(value, step)
            if self.trial.should_prune():
                self.trial.set_user_attr("pruned_at_step", step)
                self.trial.set_user_attr("score", float(np.mean(self.earlier + [self.best])))
                raise _optuna().TrialPruned(
                    f"Trial {self.trial.number} pruned at epoch {epoch}: {name}={value:.6g}")

    def on_train_end(self, logs=None):
        if self.best_variables is not None:
            self.model.variables = self.best_variables


def _is_score(value) -> bool:
    """A plain objective's result: a real number (Python, NumPy or a 0-d array)."""
    if isinstance(value, bool) or hasattr(value, "fit"):
        return False
    if isinstance(value, numbers.Real):
        return True
    return hasattr(value, "shape") and tuple(value.shape) == () and hasattr(value, "dtype") \
        and np.issubdtype(np.dtype(value.dtype), np.number)


def _missing_message(name: str, keys: list[str]) -> str:
    msg = f"The objective {name!r} was never logged; the logged keys are {sorted(keys)}."
    if name.startswith("val_") and not any(k.startswith("val_") for k in keys):
        msg += " Pass validation_data= or validation_split= to search() to log val_ metrics."
    else:
        msg += " Pick one of them as objective, or add the metric to compile(metrics=...)."
    return msg


class Tuner:
    """Shared machinery of RandomSearch and TPESearch (subclasses choose the sampler).

    objective: a logged metric name (direction inferred: losses/errors are minimized,
        accuracy/AUC/precision/recall maximized), or `tune.Objective(name, direction)`.
        A trial's score is the best epoch value, averaged over `executions_per_trial`.
    seed: seeds the sampler and, per trial and execution, jaxgraph's global seed
        (`set_random_seed`), so a search is reproducible.
    directory / project_name: store the study in `directory/project_name.db` (Optuna's
        SQLite storage) and trained models under `directory/project_name/`; a new
        tuner on the same directory resumes (finished trials are not run again);
        `overwrite=True` starts over.
    pruner: 'median' (MedianPruner), None, or any optuna pruner.
    """

    default_pruner = None

    def __init__(self, build_fn, objective="val_loss", max_trials=10, seed=None,
                 executions_per_trial=1, directory=None, project_name="search",
                 overwrite=False, direction=None, pruner="default", verbose=1):
        if not callable(build_fn):
            raise TypeError(f"build_fn must be a callable build_fn(hp), got {build_fn!r}")
        for label, value in (("max_trials", max_trials),
                             ("executions_per_trial", executions_per_trial)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{label} must be an int >= 1, got {value!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        if not isinstance(project_name, str) or not project_name or os.sep in project_name:
            raise ValueError(f"project_name must be a plain file name, got {project_name!r}")
        self.build_fn = build_fn
        self.objective = as_objective(objective, direction)
        self.max_trials = int(max_trials)
        self.seed = None if seed is None else int(seed)
        self.executions_per_trial = int(executions_per_trial)
        self.directory = None if directory is None else os.fspath(directory)
        self.project_name = project_name
        self.verbose = int(verbose)
        self.pruner = self._make_pruner(self.default_pruner if pruner == "default" else pruner)
        self._models: dict[int, object] = {}
        self._study = self._open_study(bool(overwrite))

    # ------------------------------------------------------------------ optuna pieces

    def _make_sampler(self, seed):
        raise NotImplementedError(f"{type(self).__name__} must define _make_sampler(seed)")

    def _make_pruner(self, pruner):
        optuna = _optuna()
        if pruner is None:
            return optuna.pruners.NopPruner()
        if isinstance(pruner, str):
            if pruner.lower() == "median":
                return optuna.pruners.MedianPruner()
            raise ValueError(f"Unknown pruner {pruner!r}; use 'median', None or an "
                             "optuna.pruners.BasePruner instance")
        if isinstance(pruner, optuna.pruners.BasePruner):
            return pruner
        raise TypeError(f"pruner must be 'median', None or an optuna pruner, got {pruner!r}")

    @property
    def storage_path(self) -> str | None:
        """The SQLite file holding the study (None: in memory)."""
        if self.directory is None:
            return None
        return os.path.join(self.directory, f"{self.project_name}.db")

    @property
    def models_directory(self) -> str | None:
        if self.directory is None:
            return None
        return os.path.join(self.directory, self.project_name)

    def _open_study(self, overwrite: bool):
        optuna = _optuna()
        storage = None
        if self.directory is not None:
            os.makedirs(self.directory, exist_ok=True)
            if overwrite:
                if os.path.exists(self.storage_path):
                    os.remove(self.storage_path)
                if os.path.isdir(self.models_directory):
                    shutil.rmtree(self.models_directory)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # Heartbeats let a resumed search mark trials of a killed process FAIL.
                storage = optuna.storages.RDBStorage(
                    f"sqlite:///{os.path.abspath(self.storage_path)}",
                    heartbeat_interval=30, grace_period=90)
        previous = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.create_study(
                storage=storage, study_name=self.project_name, load_if_exists=True,
                direction=self.objective.direction, sampler=self._make_sampler(self.seed),
                pruner=self.pruner)
        finally:
            optuna.logging.set_verbosity(previous)
        stored = study.user_attrs.get("objective")
        if stored is None:
            study.set_user_attr("objective", [self.objective.name, self.objective.direction])
        elif list(stored) != [self.objective.name, self.objective.direction]:
            raise ValueError(
                f"The study stored in {self.storage_path!r} optimizes {stored[0]!r} "
                f"({stored[1]}), not {self.objective.name!r} ({self.objective.direction}); "
                "use another project_name or overwrite=True")
        return study

    @property
    def study(self):
        """The underlying optuna.Study (for Optuna's own tools and plots)."""
        return self._study

    # ------------------------------------------------------------------ search

    def enqueue(self, values: dict) -> None:
        """Run a trial with these hyperparameter values next (Optuna's enqueue_trial)."""
        if not isinstance(values, dict):
            raise TypeError(f"enqueue expects a dict of hyperparameter values, got {values!r}")
        self._study.enqueue_trial(dict(values), skip_if_exists=False)

    def _finished(self) -> int:
        return sum(1 for t in self._study.trials if t.state.name in ("COMPLETE", "PRUNED"))

    def search(self, x=None, y=None, **fit_kwargs):
        """Run trials until `max_trials` have finished (COMPLETE or PRUNED) in the study;
        a study resumed from `directory` only runs the missing ones."""
        optuna = _optuna()
        remaining = self.max_trials - self._finished()
        if remaining <= 0:
            if self.verbose:
                print(f"Search {self.project_name!r}: {self._finished()} trials already "
                      f"finished (max_trials={self.max_trials}); nothing to run")
                self.results_summary()
            return self
        # A resumed study must not replay the first trials' random draws.
        offset = len(self._study.trials)
        self._study.sampler = self._make_sampler(
            None if self.seed is None else self.seed + 7919 * offset)
        fit_kwargs.setdefault("verbose", 0)
        callbacks = [self._print_trial] if self.verbose else []
        previous = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            while self._finished() < self.max_trials:
                todo = self.max_trials - self._finished()
                self._study.optimize(lambda trial: self._run_trial(trial, x, y, fit_kwargs),
                                     n_trials=todo, callbacks=callbacks, catch=())
        finally:
            optuna.logging.set_verbosity(previous)
        if self.verbose:
            self.results_summary()
        return self

    def _trial_seed(self, number: int, execution: int) -> int | None:
        if self.seed is None:
            return None
        return int(np.random.SeedSequence([self.seed, number, execution]).generate_state(1)[0]
                   % (2**31 - 1))

    def _run_trial(self, trial, x, y, fit_kwargs):
        from .. import random as jg_random

        start = time.perf_counter()
        hp = HyperParameters(trial=trial)
        scores: list[float] = []
        reporters: list[_TrialReporter] = []
        best_model, best_score = None, None
        try:
            for execution in range(self.executions_per_trial):
                seed = self._trial_seed(trial.number, execution)
                if seed is not None:
                    jg_random.set_random_seed(seed)
                built = self.build_fn(hp)
                self._check_space(hp)
                if _is_score(built):
                    score, model = float(np.asarray(built)), None
                else:
                    reporter = _TrialReporter(trial, self.objective, scores, execution)
                    reporters.append(reporter)
                    score, model = self._fit_trial(built, reporter, x, y, fit_kwargs)
                if math.isnan(score):  # diverged: the worst score, and the search goes on
                    trial.set_user_attr("nan", True)
                    score = math.inf if self.objective.minimize else -math.inf
                scores.append(score)
                if self.objective.better(score, best_score):
                    best_score, best_model = score, model
                trial.set_user_attr("score", float(np.mean(scores)))
        finally:
            trial.set_user_attr("seconds", time.perf_counter() - start)
            trial.set_user_attr("epochs", sum(r.epochs for r in reporters))
        trial.set_user_attr("executions", [float(s) for s in scores])
        if best_model is not None:
            self._keep_model(trial.number, best_model)
        return float(np.mean(scores))

    def _check_space(self, hp: HyperParameters) -> None:
        if self.max_trials > 1 and not any(p.tunable for p in hp.space):
            raise ValueError(
                f"build_fn {getattr(self.build_fn, '__name__', self.build_fn)!r} asks for no "
                f"hyperparameters (hp.Int, hp.Float, hp.Choice, hp.Boolean), so all "
                f"{self.max_trials} trials would be the same; define a search space or use "
                "max_trials=1")

    def _fit_trial(self, model, reporter, x, y, fit_kwargs):
        if not (hasattr(model, "fit") and hasattr(model, "compile")):
            raise TypeError(
                "build_fn(hp) must return a compiled jaxgraph model or a number (the score), "
                f"got {type(model).__name__}")
        if getattr(model, "_trainer", None) is None:
            raise ValueError(f"build_fn(hp) returned model {model.name!r} uncompiled; call "
                             "model.compile(...) inside build_fn")
        kwargs = dict(fit_kwargs)
        reporter.step_offset = reporter.execution * int(kwargs.get("epochs", 1))
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [reporter]
        model.fit(x, y, **kwargs)
        if reporter.best is None:
            raise ValueError(_missing_message(self.objective.name, reporter.seen_keys))
        return reporter.best, model

    def _keep_model(self, number: int, model) -> None:
        self._models[number] = model
        if self.models_directory is None:
            return
        os.makedirs(self.models_directory, exist_ok=True)
        try:
            model.save(self._model_path(number))
        except (TypeError, ValueError, NotImplementedError) as e:
            warnings.warn(f"Trial {number}'s model could not be saved ({e}); it is kept in "
                          "memory only", stacklevel=2)

    def _model_path(self, number: int) -> str:
        return os.path.join(self.models_directory, f"trial_{number:04d}.jgraph")

    def _print_trial(self, study, trial) -> None:
        row = _row(trial)
        score = "-" if row["score"] is None else f"{row['score']:.6g}"
        hps = ", ".join(f"{k}={_fmt(v)}" for k, v in row["hyperparameters"].items())
        done = self._finished()
        print(f"Trial {trial.number} ({done}/{self.max_trials}) {row['status']}: "
              f"{self.objective.name}={score} in {row['seconds']:.1f}s [{hps}]")

    # ------------------------------------------------------------------ results

    @property
    def results(self) -> list[dict]:
        """One row per trial: number, hyperparameters, score, status, seconds, epochs."""
        return [_row(t) for t in self._study.trials]

    def _ranked(self) -> list:
        complete = [t for t in self._study.trials if t.state.name == "COMPLETE"]
        sign = 1.0 if self.objective.minimize else -1.0
        return sorted(complete, key=lambda t: (sign * t.value, t.number))

    def get_best_hyperparameters(self, n: int = 1) -> list[dict]:
        """The hyperparameter values of the n best complete trials, best first."""
        ranked = self._ranked()
        if not ranked:
            raise RuntimeError("No complete trials yet: run search() first")
        return [_hyperparameters(t) for t in ranked[:n]]

    def get_best_models(self, n: int = 1) -> list:
        """The n best trials' trained models (weights of their best epoch), best first."""
        ranked = self._ranked()
        if not ranked:
            raise RuntimeError("No complete trials yet: run search() first")
        return [self.get_model(t.number) for t in ranked[:n]]

    def get_model(self, number: int):
        """Trial `number`'s trained model: from memory, or from `directory` when another
        process (an earlier, resumed search) trained it."""
        from ..models import load_model

        if number in self._models:
            return self._models[number]
        trials = {t.number: t for t in self._study.trials}
        if number not in trials:
            raise ValueError(f"No trial {number}; the study has trials {sorted(trials)}")
        if trials[number].state.name != "COMPLETE":
            raise RuntimeError(f"Trial {number} is {_status(trials[number])}, not COMPLETE; "
                               "only complete trials keep their models")
        path = None if self.models_directory is None else self._model_path(number)
        if path is not None and os.path.exists(path):
            self._models[number] = load_model(path)
            return self._models[number]
        raise RuntimeError(
            f"No model for trial {number}: its build_fn returned a score, not a model, or it "
            "ran in another process without a directory= to save it in. Rebuild it with "
            "build_fn(tune.HyperParameters(values=...)) and fit it")

    def results_summary(self, num_trials: int = 10, print_fn=print) -> None:
        """Print the best trials as a table (then the pruned and failed ones)."""
        trials = self._study.trials
        counts = {s: sum(1 for t in trials if _status(t) == s) for s in _STATUSES}
        print_fn(f"Results summary: {self.project_name!r}, objective {self.objective.name} "
                 f"({self.objective.direction}); {len(trials)} trials: "
                 + ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v))
        ranked = self._ranked()
        rest = sorted((t for t in trials if t.state.name != "COMPLETE"), key=lambda t: t.number)
        rows = [_row(t) for t in (ranked + rest)[:num_trials]]
        if not rows:
            return
        names = []
        for r in rows:
            names += [k for k in r["hyperparameters"] if k not in names]
        header = ["rank", "trial", "status", self.objective.name, "seconds"] + names
        table = []
        for i, r in enumerate(rows):
            rank = str(i + 1) if r["status"] == "COMPLETE" else "-"
            score = "-" if r["score"] is None else f"{r['score']:.6g}"
            table.append([rank, str(r["number"]), r["status"], score, f"{r['seconds']:.1f}"]
                         + [_fmt(r["hyperparameters"].get(k, "")) for k in names])
        widths = [max(len(h), *(len(row[j]) for row in table)) for j, h in enumerate(header)]
        print_fn("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for row in table:
            print_fn("  ".join(c.ljust(w) for c, w in zip(row, widths)))

    def search_space_summary(self, print_fn=print) -> None:
        """Print the hyperparameters the trials so far asked for."""
        seen: dict[str, object] = {}
        for t in self._study.trials:
            for name, dist in t.distributions.items():
                seen.setdefault(name, dist)
        print_fn(f"Search space summary: {len(seen)} hyperparameters")
        for name, dist in seen.items():
            print_fn(f"{name}: {dist}")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _hyperparameters(trial) -> dict:
    values = dict(trial.params)
    for key, value in trial.user_attrs.items():
        if key.startswith("fixed:"):
            values[key[len("fixed:"):]] = value
    return values


def _row(trial) -> dict:
    score = trial.user_attrs.get("score", trial.value)
    return {
        "number": trial.number,
        "hyperparameters": _hyperparameters(trial),
        "score": None if score is None else float(score),
        "status": _status(trial),
        "seconds": float(trial.user_attrs.get("seconds", 0.0)),
        "epochs": int(trial.user_attrs.get("epochs", 0)),
    }


class RandomSearch(Tuner):
    """Hyperparameters drawn independently at random (Optuna's RandomSampler)."""

    def _make_sampler(self, seed):
        return _optuna().samplers.RandomSampler(seed=seed)


class TPESearch(Tuner):
    """Tree-structured Parzen Estimator (Optuna's TPESampler) with median pruning."""

    default_pruner = "median"

    def _make_sampler(self, seed):
        return _optuna().samplers.TPESampler(seed=seed)
