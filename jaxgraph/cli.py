"""`jaxgraph train CONFIG`: train a model described by a YAML file, with logs and checkpoints.

Usage::

    jaxgraph train CONFIG [--resume] [--set key.path=value ...] [--output-dir DIR]
                          [--epochs N] [--quiet]

The config (every key optional except `model` and `data`)::

    name: digits_convnet             # default: the config file's stem
    seed: 0                          # jaxgraph.utils.set_random_seed
    model:                           # a builder from jaxgraph.zoo.REGISTRY ...
      builder: digits_convnet        #   ... or "package.module:function"
      args: {num_classes: 10}        #   keyword arguments of the builder
    # model:                         # ... or a Sequential stack of jaxgraph.layers
    #   input_shape: [64]            #   default: the training data's sample shape
    #   sequential:
    #     - Dense: {units: 64, activation: relu}
    #     - Dense: {units: 10, activation: softmax}
    data:
      dataset: digits                # digits | mnist | fashion_mnist | imdb |
                                     # synthetic_posts | a path to an .npz file
      path: null                     # mnist/fashion_mnist/imdb: local file or directory
      scale: 255                     # divide the inputs by this
      channel_axis: true             # images (n, h, w) -> (n, h, w, 1)
      flatten: false                 # images -> vectors
      one_hot: true                  # targets to one-hot: true, or a list of output names
      validation_split: 0.1          # the last fraction of the training data
      options: {}                    # imdb: num_words, maxlen; synthetic_posts:
                                     # num_samples, test_samples, vocabulary_size,
                                     # seq_len, num_income_groups
    optimizer: {name: rmsprop, learning_rate: 1.0e-3}   # or just a name
    loss: categorical_crossentropy   # or one per output: {age: mse, income: ...}
    loss_weights: null               # a list or a dict by output name
    metrics: [accuracy]              # or a dict by output name
    callbacks:                       # extra jaxgraph.callbacks, [{Name: {kwargs}}, Name]
      - EarlyStopping: {patience: 5}
    epochs: 10
    batch_size: 32
    output_dir: runs/<name>          # relative to the current directory

A `.npz` dataset holds `x_train`, `y_train` and optionally `x_test`, `y_test`.
Callbacks always present (a `callbacks:` entry of the same class changes their
arguments): `TensorBoard` -> `OUTPUT/tensorboard/`, `CSVLogger` -> `OUTPUT/history.csv`,
`ModelCheckpoint` (best `val_loss`) -> `OUTPUT/checkpoints/best.jgraph`,
`BackupAndRestore` -> `OUTPUT/backup/`. The final model goes to `OUTPUT/model.jgraph`,
the effective config to `OUTPUT/config.resolved.yaml`, test metrics to
`OUTPUT/test_metrics.json`. `--resume` continues from `backup/` (e.g. after an
interruption, or with a larger `--epochs`); without it, an old `backup/` and
`tensorboard/` are cleared first. Numbers like `1e-3` are read as floats.

Any mistake in the config or the command line prints one line
`jaxgraph: error: ...` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import inspect
import json
import os
import re
import shutil
import sys
import time

import yaml

PROG = "jaxgraph"
TOP_LEVEL_KEYS = ("name", "seed", "model", "data", "optimizer", "loss", "loss_weights",
                  "metrics", "callbacks", "epochs", "batch_size", "output_dir")
DATA_KEYS = ("dataset", "path", "scale", "channel_axis", "flatten", "one_hot",
             "validation_split", "options")
DATASETS = ("digits", "mnist", "fashion_mnist", "imdb", "synthetic_posts")
DEFAULTS = {"seed": 0, "optimizer": "rmsprop", "loss": "categorical_crossentropy",
            "loss_weights": None, "metrics": ["accuracy"], "callbacks": [], "epochs": 10,
            "batch_size": 32}
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")


class ConfigError(Exception):
    """A mistake in the user's config or command line: reported in one line, exit 2."""


# ---------------------------------------------------------------------------- config


def _floats(value):
    """PyYAML reads `1e-3` as a string (YAML 1.1); numbers written so become floats."""
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        return float(value)
    return value


def load_config(path):
    """Read the YAML config at `path` (a dict), with line numbers in parse errors."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys, "
                          f"got a {type(config).__name__}")
    return _floats(config)


def apply_override(config, assignment):
    """`--set a.b.c=value`: set a nested key (list items by index), value parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key.path=value")
    path, _, text = assignment.partition("=")
    keys = path.strip().split(".")
    if not all(keys):
        raise ConfigError(f"--set {assignment!r}: empty key in path {path!r}")
    if keys[0] not in TOP_LEVEL_KEYS:
        raise ConfigError(f"--set {assignment!r}: unknown config key {keys[0]!r} "
                          f"(known: {', '.join(TOP_LEVEL_KEYS)})")
    try:
        value = _floats(yaml.safe_load(text))
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML "
                          f"({getattr(err, 'problem', err)})") from None
    node = config
    for depth, key in enumerate(keys[:-1]):
        here = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            node = node[_index(key, node, here, assignment)]
        elif isinstance(node, dict):
            if node.get(key) is None:
                node[key] = {}
            elif isinstance(node[key], str) and depth == 0 and key == "optimizer":
                node[key] = {"name": node[key]}  # `optimizer: adam` + --set optimizer.lr=...
            node = node[key]
        else:
            raise ConfigError(f"--set {assignment!r}: {'.'.join(keys[:depth])} is a "
                              f"{type(node).__name__}, not a mapping")
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {assignment!r}: {here} is a {type(node).__name__} "
                              f"({node!r}), not a mapping")
    last = keys[-1]
    if isinstance(node, list):
        node[_index(last, node, path, assignment)] = value
    else:
        node[last] = value
    return config


def _index(key, items, where, assignment):
    try:
        i = int(key)
        items[i]  # noqa: B018
    except (ValueError, IndexError):
        raise ConfigError(f"--set {assignment!r}: {where} needs an index in "
                          f"0..{len(items) - 1}, got {key!r}") from None
    return i


def resolve_config(config, config_path, args):
    """Check keys, fill defaults and apply command-line flags; returns a new dict."""
    config = copy.deepcopy(config)
    unknown = [k for k in config if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise ConfigError(f"{config_path}: unknown key {unknown[0]!r} "
                          f"(known: {', '.join(TOP_LEVEL_KEYS)})")
    for key in ("model", "data"):
        if not isinstance(config.get(key), dict):
            raise ConfigError(f"{config_path}: '{key}' must be a mapping "
                              f"(see `python -m jaxgraph --help`)")
    if not isinstance(config["data"].get("dataset"), str):
        raise ConfigError(f"{config_path}: data.dataset must be a name or an .npz path")
    bad = [k for k in config["data"] if k not in DATA_KEYS]
    if bad:
        raise ConfigError(f"{config_path}: unknown key data.{bad[0]} "
                          f"(known: {', '.join(DATA_KEYS)})")
    for key, value in DEFAULTS.items():
        config.setdefault(key, copy.deepcopy(value))
    config.setdefault("name", os.path.splitext(os.path.basename(config_path))[0])
    if args.epochs is not None:
        config["epochs"] = args.epochs
    if args.output_dir is not None:
        config["output_dir"] = args.output_dir
    config.setdefault("output_dir", os.path.join("runs", str(config["name"])))
    for key in ("epochs", "batch_size", "seed"):
        if isinstance(config[key], bool) or not isinstance(config[key], int) \
                or config[key] < (0 if key == "seed" else 1):
            raise ConfigError(f"{config_path}: {key} must be a positive integer, "
                              f"got {config[key]!r}")
    return config


# ---------------------------------------------------------------------------- data


def _load_dataset(data, seed):
    """((x_train, y_train), (x_test, y_test) or None) for `data.dataset`."""
    from . import datasets

    name = data["dataset"]
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigError("data.options must be a mapping")
    path = data.get("path")
    if name == "digits":
        return datasets.digits.load_data()
    if name in ("mnist", "fashion_mnist"):
        return getattr(datasets, name).load_data(path=path)
    if name == "imdb":
        from .preprocessing.sequence import pad_sequences

        maxlen = int(options.get("maxlen", 200))
        (xtr, ytr), (xte, yte) = datasets.imdb.load_data(
            path=path, num_words=int(options.get("num_words", 10000)))
        return ((pad_sequences(xtr, maxlen=maxlen), ytr.astype("float32")),
                (pad_sequences(xte, maxlen=maxlen), yte.astype("float32")))
    if name == "synthetic_posts":
        from .zoo import synthetic_posts

        options = dict(options)
        test = int(options.pop("test_samples", 500))
        n = int(options.pop("num_samples", 2000))
        try:
            x, y = synthetic_posts(num_samples=n + test, seed=seed, **options)
        except TypeError as err:
            raise ConfigError(f"data.options: {err}") from None
        train = (x[:n], {k: v[:n] for k, v in y.items()})
        return train, (x[n:], {k: v[n:] for k, v in y.items()})
    if name.endswith(".npz") or os.path.sep in name:
        return _load_npz(name)
    raise ConfigError(f"data.dataset: unknown dataset {name!r} "
                      f"(known: {', '.join(DATASETS)}, or a path to an .npz file)")


def _load_npz(path):
    import numpy as np

    if not os.path.isfile(path):
        raise ConfigError(f"data.dataset: data file {path!r} not found "
                          f"(relative paths start at {os.getcwd()})")
    with np.load(path, allow_pickle=False) as archive:
        keys = set(archive.files)
        if not {"x_train", "y_train"} <= keys:
            raise ConfigError(f"data.dataset: {path} must hold arrays x_train and y_train "
                              f"(it has {', '.join(sorted(keys)) or 'none'})")
        train = (archive["x_train"], archive["y_train"])
        test = (archive["x_test"], archive["y_test"]) if {"x_test", "y_test"} <= keys else None
    return train, test


def _prepare_x(x, data):
    import numpy as np

    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer) and not data.get("scale") and x.ndim == 2:
        return x.astype("int32")  # token ids
    x = x.astype("float32")
    if data.get("scale"):
        x = x / float(data["scale"])
    if data.get("flatten"):
        x = x.reshape(len(x), -1)
    elif data.get("channel_axis") and x.ndim == 3:
        x = x[..., None]
    return x


def _prepare_y(y, data, num_classes):
    import numpy as np

    from .utils import to_categorical

    one_hot = data.get("one_hot", False)
    if isinstance(y, dict):
        names = one_hot if isinstance(one_hot, list) else (list(y) if one_hot is True else [])
        missing = [n for n in names if n not in y]
        if missing:
            raise ConfigError(f"data.one_hot names {missing[0]!r}, not a target "
                              f"(targets: {', '.join(y)})")
        return {k: (to_categorical(v, num_classes.get(k)) if k in names else v)
                for k, v in y.items()}
    if one_hot:
        return to_categorical(np.asarray(y), num_classes)
    return np.asarray(y)


def load_data(config):
    """The config's data, preprocessed: ((x, y), (x_test, y_test) or None)."""
    import numpy as np

    data = config["data"]
    if not data.get("dataset"):
        raise ConfigError("data.dataset is missing (a dataset name or an .npz path)")
    try:
        train, test = _load_dataset(data, config["seed"])
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data.dataset {data['dataset']!r}: {_one_line(err)}") from None
    split = data.get("validation_split", 0.0) or 0.0
    if not 0.0 <= float(split) < 1.0:
        raise ConfigError(f"data.validation_split must be in [0, 1), got {split!r}")
    y_all = train[1] if test is None else (train[1], test[1])
    if isinstance(train[1], dict):
        num_classes = {k: int(max(np.max(v) for v in _pairs(y_all, k))) + 1 for k in train[1]}
    else:
        num_classes = int(max(np.max(v) for v in _pairs(y_all, None))) + 1
    prepare = lambda split_: (_prepare_x(split_[0], data),
                              _prepare_y(split_[1], data, num_classes))
    return prepare(train), (prepare(test) if test is not None else None)


def _pairs(y_all, key):
    parts = y_all if isinstance(y_all, tuple) else (y_all,)
    return [p[key] if key is not None else p for p in parts]


# ---------------------------------------------------------------------------- the model


def _suggest(name, known):
    close = difflib.get_close_matches(str(name), known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _layer_class(name, where):
    from . import layers
    from .layers.base import Layer

    known = sorted(n for n in dir(layers) if isinstance(getattr(layers, n), type)
                   and issubclass(getattr(layers, n), Layer))
    cls = getattr(layers, str(name), None) if str(name) in known else None
    if cls is None:
        raise ConfigError(f"{where}: unknown layer {name!r}{_suggest(name, known)} "
                          "(layer classes of jaxgraph.layers)")
    return cls


def _entry(entry, where):
    """`Name`, or `{Name: {kwargs}}` -> (name, kwargs)."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and len(entry) == 1:
        (name, kwargs), = entry.items()
        kwargs = kwargs or {}
        if not isinstance(kwargs, dict):
            raise ConfigError(f"{where}: arguments of {name!r} must be a mapping, "
                              f"got {kwargs!r}")
        return name, kwargs
    raise ConfigError(f"{where}: expected a name or {{Name: {{arguments}}}}, got {entry!r}")


def build_model(config, x_train):
    """The model named by `model.builder`, or the Sequential stack in `model.sequential`."""
    from . import zoo
    from .graph.input_layer import Input
    from .models import Sequential

    spec = config["model"]
    if "sequential" in spec:
        stack = spec["sequential"]
        if not isinstance(stack, list) or not stack:
            raise ConfigError("model.sequential must be a non-empty list of layers")
        shape = spec.get("input_shape")
        if shape is None:
            shape = tuple(x_train.shape[1:])
        dtype = "int32" if str(x_train.dtype).startswith("int") else "float32"
        built = [Input(shape=tuple(shape), dtype=dtype)]
        for i, entry in enumerate(stack):
            where = f"model.sequential[{i}]"
            name, kwargs = _entry(entry, where)
            cls = _layer_class(name, where)
            try:
                built.append(cls(**kwargs))
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{where} ({name}): {_one_line(err)}") from None
        try:
            return Sequential(built, name=str(config["name"]))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model.sequential: {_one_line(err)}") from None
    if "builder" not in spec:
        raise ConfigError("model needs 'builder' (a jaxgraph.zoo name or 'module:function') "
                          "or 'sequential' (a list of layers)")
    extra = [k for k in spec if k not in ("builder", "args")]
    if extra:
        raise ConfigError(f"model: unknown key {extra[0]!r} (with a builder: builder, args)")
    try:
        builder = zoo.get_builder(spec["builder"])
    except ValueError as err:
        raise ConfigError(f"model.builder: {err}") from None
    args = spec.get("args") or {}
    if not isinstance(args, dict):
        raise ConfigError(f"model.args must be a mapping, got {args!r}")
    try:
        inspect.signature(builder).bind(**args)
    except TypeError as err:
        raise ConfigError(f"model.args for {spec['builder']!r}: {err}") from None
    try:
        return builder(**args)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.args for {spec['builder']!r}: {_one_line(err)}") from None


# ---------------------------------------------------------------------------- compile


def make_optimizer(spec):
    from . import optimizers

    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"optimizer must be a name or {{name: ..., <arguments>}}, got {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    try:
        cls = type(optimizers.get(str(spec["name"])))
    except ValueError:
        known = [n for n in optimizers.accepted_names() if n.islower()]
        raise ConfigError(f"optimizer: unknown optimizer {spec['name']!r}"
                          f"{_suggest(spec['name'], known)} (known: {', '.join(known)})") from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"optimizer: {_one_line(err)}") from None


def check_losses(loss, output_names):
    from . import losses

    items = loss.items() if isinstance(loss, dict) else (
        enumerate(loss) if isinstance(loss, list) else [(None, loss)])
    for key, value in items:
        where = "loss" if key is None else f"loss[{key!r}]"
        if isinstance(loss, dict) and key not in output_names:
            raise ConfigError(f"{where}: the model has no output {key!r} "
                              f"(outputs: {', '.join(output_names)})")
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a loss name, got {value!r}")
        if value.lower() in ("crossentropy", "ce"):
            continue
        try:
            losses.get(value)
        except ValueError:
            raise ConfigError(f"{where}: unknown loss {value!r}"
                              f"{_suggest(value, losses.accepted_names())} "
                              "(names of jaxgraph.losses, e.g. mse, "
                              "categorical_crossentropy)") from None


def make_callbacks(config, out, resume, has_validation):
    """The standard callbacks (updated by same-class config entries) plus the extra ones."""
    from . import callbacks as cbs

    monitor = "val_loss" if has_validation else "loss"
    standard = {
        "BackupAndRestore": {"backup_dir": os.path.join(out, "backup"),
                             "delete_checkpoint": False},
        "CSVLogger": {"filename": os.path.join(out, "history.csv"), "append": resume},
        "ModelCheckpoint": {"filepath": os.path.join(out, "checkpoints", "best.jgraph"),
                            "monitor": monitor, "save_best_only": True},
        "TensorBoard": {"log_dir": os.path.join(out, "tensorboard")},
    }
    known = sorted(n for n in cbs.__all__ if n not in ("CallbackList", "History",
                                                       "ProgbarLogger", "Callback"))
    extra = []
    entries = config["callbacks"] or []
    if not isinstance(entries, list):
        raise ConfigError("callbacks must be a list of {Name: {arguments}}")
    for i, entry in enumerate(entries):
        where = f"callbacks[{i}]"
        name, kwargs = _entry(entry, where)
        if name not in known:
            raise ConfigError(f"{where}: unknown callback {name!r}{_suggest(name, known)} "
                              f"(known: {', '.join(known)})")
        if name in standard:
            standard[name].update(kwargs)
        else:
            extra.append((where, name, kwargs))
    made = []
    backup = None
    for where, name, kwargs in [(f"callbacks ({n})", n, k) for n, k in standard.items()] + extra:
        try:
            callback = getattr(cbs, name)(**kwargs)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: {name}: {_one_line(err)}") from None
        if name == "BackupAndRestore":
            backup = callback
        elif name == "CSVLogger" and resume:
            callback = _trim_on_restore(callback, backup)
        made.append(callback)
    return made


def _trim_on_restore(logger, backup):
    """On --resume, drop history.csv rows of epochs the backup had not reached."""
    begin = logger.on_train_begin

    def on_train_begin(logs=None):
        restored = backup.restored_epoch if backup is not None else None
        if restored is not None and os.path.exists(logger.filename):
            with open(logger.filename, newline="") as f:
                lines = f.readlines()
            kept = lines[:1] + [ln for ln in lines[1:]
                                if ln.split(logger.sep, 1)[0].isdigit()
                                and int(ln.split(logger.sep, 1)[0]) < restored]
            with open(logger.filename, "w", newline="") as f:
                f.writelines(kept)
        elif os.path.exists(logger.filename):
            os.remove(logger.filename)  # nothing restored: start the history afresh
        begin(logs)

    logger.on_train_begin = on_train_begin
    return logger


# ---------------------------------------------------------------------------- train


def _one_line(err):
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _say(args, *parts):
    if not args.quiet:
        print(*parts, flush=True)


def train(args):
    """Run the `train` command; returns the test metrics (a dict, maybe empty)."""
    raw = load_config(args.config)
    for assignment in args.set or []:
        apply_override(raw, assignment)
    config = resolve_config(raw, args.config, args)
    out = os.path.abspath(str(config["output_dir"]))

    import jax  # noqa: F401  (imported here: the error paths above stay fast)

    from . import utils

    utils.set_random_seed(config["seed"])
    (x_train, y_train), test = load_data(config)
    model = build_model(config, x_train)
    check_losses(config["loss"], list(model.output_names))
    optimizer = make_optimizer(config["optimizer"])
    try:
        model.compile(optimizer=optimizer, loss=config["loss"],
                      loss_weights=config["loss_weights"], metrics=config["metrics"])
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"compile (loss/loss_weights/metrics): {_one_line(err)}") from None

    if not args.resume:
        for sub in ("backup", "tensorboard"):
            shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    elif not os.path.isdir(os.path.join(out, "backup")):
        _say(args, f"note: no backup in {os.path.join(out, 'backup')}; starting from scratch")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.resolved.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, sort_keys=False)

    split = float(config["data"].get("validation_split") or 0.0)
    callbacks = make_callbacks(config, out, args.resume, split > 0)
    _say(args, f"{PROG}: training {config['name']} ({model.count_params():,} parameters) on "
               f"{config['data']['dataset']} ({len(x_train)} samples, validation_split "
               f"{split}) -> {out}")
    start = time.perf_counter()
    try:
        model.fit(x_train, y_train, epochs=config["epochs"], batch_size=config["batch_size"],
                  validation_split=split, callbacks=callbacks, verbose=0 if args.quiet else 1)
    except ValueError as err:
        if "target" in str(err) or "shape" in str(err):
            raise ConfigError(f"data/model mismatch: {_one_line(err)}") from None
        raise
    seconds = time.perf_counter() - start
    model.save(os.path.join(out, "model.jgraph"))
    results = {}
    if test is not None:
        results = model.evaluate(test[0], test[1], batch_size=config["batch_size"],
                                 verbose=0, return_dict=True)
        results = {k: float(v) for k, v in results.items()}
        with open(os.path.join(out, "test_metrics.json"), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    print(f"trained in {seconds:.1f}s; model saved to {os.path.join(out, 'model.jgraph')}",
          flush=True)
    if results:
        print("test: " + " - ".join(f"{k}: {v:.4f}" for k, v in results.items()), flush=True)
    _say(args, f"logs: tensorboard --logdir {os.path.join(out, 'tensorboard')}")
    return results


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Train jaxgraph models from YAML configs.",
        epilog="Config schema: see the module docstring of jaxgraph.cli or the README.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("train", help="train the model described by a YAML config",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="the YAML config file")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUTPUT/backup (an interrupted or shorter run)")
    p.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                   help="override a config value (YAML); repeatable")
    p.add_argument("--output-dir", help="where logs, checkpoints and the model go")
    p.add_argument("--epochs", type=int, help="override the config's epochs")
    p.add_argument("--quiet", action="store_true", help="no progress output, only results")
    return parser


def main(argv=None):
    """Entry point of `jaxgraph` and `python -m jaxgraph`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself reports usage errors with exit 2
    try:
        if args.command == "train":
            train(args)
    except ConfigError as err:
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; continue with: {PROG} train {args.config} --resume",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
