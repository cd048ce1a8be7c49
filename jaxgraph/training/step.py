"""The pure train / eval / predict steps, built once per `compile` from `model.apply`.

The training state is one pytree (trainable and frozen params, model state such as
BatchNorm statistics, optimizer state with its hyperparameters as arrays, step,
PRNG key, loss weights, and metric accumulators). Frozen parameters are kept out
of the differentiated and optimized subtree, so they get no gradient, no update
and no optimizer state.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import optax

from ..lowering import constraints as model_constraints
from ..lowering import regularization_loss, run_model, trainable_mask
from . import losses as losses_mod
from . import metrics as metrics_mod
from .objective import Objective


def flatten_dict(tree: dict, prefix: tuple = ()) -> dict:
    """{('dense', 'kernel'): leaf, ...} for a nested dict (empty dicts vanish)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten_dict(value, prefix + (key,)))
        else:
            out[prefix + (key,)] = value
    return out


def unflatten_dict(flat: dict) -> dict:
    out: dict = {}
    for path, value in flat.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def split_params(params: dict, mask: dict) -> tuple[dict, dict]:
    flat = flatten_dict(params)
    flat_mask = flatten_dict(mask)
    train = {k: v for k, v in flat.items() if flat_mask[k]}
    frozen = {k: v for k, v in flat.items() if not flat_mask[k]}
    return unflatten_dict(train), unflatten_dict(frozen)


def merge_params(train: dict, frozen: dict) -> dict:
    flat = flatten_dict(train)
    flat.update(flatten_dict(frozen))
    return unflatten_dict(flat)


def _row_count(data) -> int:
    return next(a.shape[0] for group in data for a in group if a is not None)


def _chunk(a, c):
    return None if a is None else jax.lax.dynamic_index_in_dim(a, c, keepdims=False)


def scan_steps(step, fetch, data, carry, idx, valid, active, masked):
    """`step(carry, x, y, sw, valid_row)` over a chunk's steps in one scan; with `masked`,
    an inactive step (padding when k does not divide the epoch) leaves `carry` as is."""
    def body(carry, inp):
        i, v, a = inp

        def run(carry):
            x, y, sw = fetch(data, i)
            return step(carry, x, y, sw, v)

        if not masked:
            return run(carry), None
        return jax.lax.cond(a, run, lambda carry: carry, carry), None

    carry, _ = jax.lax.scan(body, carry, (idx, valid, active))  # valid may be None
    return carry


# Key of the evaluation metric state that carries the rng of a model random at
# inference (a layer called with training=True); results() never reports it.
EVAL_RNG = "_rng"


class Steps:
    """Pure functions over the training state for one model + objective + optimizer."""

    def __init__(self, model, objective: Objective, tx: optax.GradientTransformation,
                 distribution=None):
        self.model = model
        self.distribution = distribution
        self.objective = objective
        self.tx = tx
        self.trace_counts: collections.Counter = collections.Counter()
        self._constraints = model_constraints(model)
        self._mask_cache = None

    # ------------------------------------------------------------------ state

    def mask(self, params):
        if self._mask_cache is None:
            self._mask_cache = trainable_mask(self.model, params)
        return self._mask_cache

    def mask_is_stale(self) -> bool:
        """Whether a `trainable` flag changed since the mask (and so the state's split into
        trained and frozen weights) was fixed."""
        cached = self._mask_cache
        return cached is not None and trainable_mask(self.model, cached) != cached

    def init_state(self, variables: dict, rng) -> dict:
        train, frozen = split_params(variables["params"], self.mask(variables["params"]))
        return {
            "train": train,
            "frozen": frozen,
            "mstate": variables.get("state", {}),
            "opt": self.tx.init(train),
            "step": jnp.zeros((), jnp.int32),
            "rng": rng,
            "loss_weights": jnp.asarray(self.objective.loss_weights, jnp.float32),
            "metrics": self.init_metrics(),
        }

    def variables_of(self, ts: dict) -> dict:
        return {"params": merge_params(ts["train"], ts["frozen"]), "state": ts["mstate"]}

    def loss_log_names(self) -> list[str]:
        """'loss', then one running loss per output of a multi-output objective."""
        names = ["loss"]
        if self.objective.multi:
            names += [self.objective.loss_log_name(i)
                      for i, fn in enumerate(self.objective.loss_fns) if fn is not None]
        return names

    def init_metrics(self) -> dict:
        # Each running loss is [sum, rows] in one array: one accumulating kernel per step.
        out = {name: jnp.zeros((2,), jnp.float32) for name in self.loss_log_names()}
        for _, metric, name, _ in self.objective.metrics:
            out[name] = metric.init()
        return out

    def results(self, metric_state: dict) -> dict:
        out = {}
        for name in self.loss_log_names():
            total, count = metric_state[name][0], metric_state[name][1]
            out[name] = total / jnp.maximum(count, 1.0)
        for _, metric, name, _ in self.objective.metrics:
            out[name] = metric.result(metric_state[name])
        return out

    # ------------------------------------------------------------------ forward + losses

    def losses(self, params, mstate, x, y, sw, valid, rng, training, loss_weights):
        """Total and per-output losses. `sw[i]` and `valid` may be None (no weighting, no
        padded rows): the program then carries no weight arrays at all."""
        outputs, new_state, extra, masks = run_model(
            self.model, {"params": params, "state": mstate}, x, training=training, rng=rng,
            with_masks=True, valid=valid)
        names = self.model.output_names
        flat_out = self.model._output_struct.unpack(outputs, names, "outputs") \
            if isinstance(outputs, (dict, list)) else [outputs]
        per_output = []
        total = jnp.zeros((), jnp.float32)
        for i, fn in enumerate(self.objective.loss_fns):
            if fn is None:
                per_output.append(None)
                continue
            pred = flat_out[i]
            if jnp.issubdtype(pred.dtype, jnp.floating):
                pred = pred.astype(jnp.float32)
            value = losses_mod.batch_loss(fn, y[i], pred, sw[i], valid, mask=masks[i],
                                          output=names[i])
            per_output.append(value)
            total = total + loss_weights[i] * value
        # Keras adds `model.losses` (weight and activity penalties, add_loss terms) in its
        # test step too: evaluate and val_loss report the same objective fit minimises.
        total = total + regularization_loss(self.model, params, mstate) + extra
        return total, per_output, (flat_out, masks), new_state

    def update_metrics(self, ms, total, per_output, y, outs, sw, valid):
        """`outs` is (outputs, their masks) in output order, as `losses` returns them."""
        flat_out, masks = outs
        ms = dict(ms)
        batch = next((o.shape[0] for o in flat_out if o is not None and o.ndim), 1)
        n_valid = jnp.asarray(batch, jnp.float32) if valid is None else valid.sum()
        ms["loss"] = ms["loss"] + jnp.stack([total * n_valid, n_valid])
        if self.objective.multi:
            for i, value in enumerate(per_output):
                if value is not None:
                    name = self.objective.loss_log_name(i)
                    ms[name] = ms[name] + jnp.stack([value * n_valid, n_valid])
        for i, metric, name, weighted in self.objective.metrics:
            if y[i] is None:
                continue
            mask = masks[i] if metric.uses_output_mask else None
            weight = metrics_mod.combine_weights(sw[i] if weighted else None, valid, mask)
            pred = flat_out[i]
            if jnp.issubdtype(pred.dtype, jnp.floating):
                pred = pred.astype(jnp.float32)
            ms[name] = metric.update(ms[name], y[i], pred, weight)
        return ms

    # ------------------------------------------------------------------ steps

    def train_step(self, ts: dict, x, y, sw, valid) -> dict:
        """One optimizer step on one batch; `valid` masks padded rows."""
        self.trace_counts["train_step"] += 1
        rng = jax.random.fold_in(ts["rng"], ts["step"])

        def objective(train):
            params = merge_params(train, ts["frozen"])
            total, per, outs, new_state = self.losses(
                params, ts["mstate"], x, y, sw, valid, rng, True, ts["loss_weights"])
            return total, (per, outs, new_state)

        (total, (per, outs, new_state)), grads = jax.value_and_grad(
            objective, has_aux=True)(ts["train"])
        updates, opt = self.tx.update(grads, ts["opt"], ts["train"])
        train = optax.apply_updates(ts["train"], updates)
        train = self._constrain(train)
        metrics = self.update_metrics(ts["metrics"], total, per, y, outs, sw, valid)
        return {**ts, "train": train, "opt": opt, "mstate": new_state, "step": ts["step"] + 1,
                "metrics": metrics}

    def _constrain(self, train: dict) -> dict:
        if not self._constraints:
            return train
        flat = flatten_dict(train)
        for path, name, constraint in self._constraints:
            key = path + (name,)
            if key in flat:
                flat[key] = constraint(flat[key])
        return unflatten_dict(flat)

    def eval_step(self, ms: dict, params, mstate, x, y, sw, valid) -> dict:
        self.trace_counts["eval_step"] += 1
        rng = None
        if EVAL_RNG in ms:  # a model random at inference: its key rides in the metric state
            key, rng = jax.random.split(jax.random.wrap_key_data(ms[EVAL_RNG]))
            ms = {**ms, EVAL_RNG: jax.random.key_data(key)}
        total, per, outs, _ = self.losses(
            params, mstate, x, y, sw, valid, rng, False,
            jnp.asarray(self.objective.loss_weights))
        return self.update_metrics(ms, total, per, y, outs, sw, valid)

    def predict_step(self, params, mstate, x, rng=None):
        self.trace_counts["predict_step"] += 1
        outputs, _, _ = run_model(self.model, {"params": params, "state": mstate}, x, rng=rng)
        return outputs

    # ------------------------------------------------------------------ gathered / multi-step

    def gather(self, data, idx):
        """The batch's rows, split over the devices when a distribution is active."""
        xs, ys, sws = data
        dist = self.distribution

        def take(a):
            if a is None:
                return None
            rows = jnp.take(a, idx, axis=0, mode="clip")  # indices are in range by construction
            if dist is not None:
                rows = jax.lax.with_sharding_constraint(rows, dist.batch_sharding(rows.ndim))
            return rows

        return [take(a) for a in xs], [take(a) for a in ys], [take(a) for a in sws]

    def rows(self, data, start, size):
        """Rows [start, start + size) of data already gathered in step order."""
        def cut(a):
            return None if a is None else jax.lax.dynamic_slice_in_dim(a, start, size)

        xs, ys, sws = data
        return [cut(a) for a in xs], [cut(a) for a in ys], [cut(a) for a in sws]

    def train_chunk(self, ts, data, idx_all, valid_all, active_all, c, masked=True):
        """Chunk `c` of an epoch: `idx_all` is (chunks, k, batch); inactive steps (padding
        when k does not divide the epoch) leave the state untouched. With `idx_all` None,
        `data` holds the chunk's own rows in step order (gathered on the host), so each
        step slices its batch instead of gathering it."""
        fetch, idx, valid, active, ts = self.chunk_inputs(ts, data, idx_all, valid_all,
                                                          active_all, c)
        if idx.shape[0] == 1:
            x, y, sw = fetch(data, idx[0])
            return self.train_step(ts, x, y, sw, None if valid is None else valid[0])
        return scan_steps(self.train_step, fetch, data, ts, idx, valid, active, masked)

    def chunk_inputs(self, ts, data, idx_all, valid_all, active_all, c):
        """What every step of chunk `c` reads: `(fetch, idx, valid, active, ts)`, with
        `fetch(data, i)` the rows of step `i` and the running metrics of `ts` started
        afresh in the epoch's first chunk (no extra dispatch)."""
        if idx_all is None:
            k = active_all.shape[1]
            size = _row_count(data) // k
            idx = jnp.arange(k)

            def fetch(d, i):
                return self.rows(d, i * size, size)
        else:
            idx = jax.lax.dynamic_index_in_dim(idx_all, c, keepdims=False)
            fetch = self.gather
        valid = _chunk(valid_all, c)
        active = jax.lax.dynamic_index_in_dim(active_all, c, keepdims=False)
        fresh = self.init_metrics()
        if active_all.shape[0] == 1:  # one chunk per epoch: c is always 0
            ts = {**ts, "metrics": fresh}
        else:
            ts = {**ts, "metrics": jax.tree_util.tree_map(
                lambda z, m: jnp.where(c == 0, z, m), fresh, ts["metrics"])}
        return fetch, idx, valid, active, ts

    def eval_chunk(self, ms, params, mstate, data, idx_all, valid_all, c):
        idx = jax.lax.dynamic_index_in_dim(idx_all, c, keepdims=False)
        valid = _chunk(valid_all, c)
        if idx.shape[0] == 1:
            x, y, sw = self.gather(data, idx[0])
            return self.eval_step(ms, params, mstate, x, y, sw, None if valid is None else valid[0])

        def body(ms, inp):
            i, v = inp
            x, y, sw = self.gather(data, i)
            return self.eval_step(ms, params, mstate, x, y, sw, v), None

        ms, _ = jax.lax.scan(body, ms, (idx, valid))
        return ms

    def predict_chunk(self, params, mstate, xs_all, start, batch_size: int, k: int = 1,
                      rng=None):
        """Outputs for rows [start, start + k * batch_size) of the padded, staged inputs,
        k batches in one program. `rng` only for a model random at inference (a layer
        called with training=True); each batch folds in its first row."""
        def one(i):
            first = start + i * batch_size
            x = [jax.lax.dynamic_slice_in_dim(a, first, batch_size) for a in xs_all]
            key = None if rng is None else jax.random.fold_in(rng, first)
            return self.predict_step(params, mstate, x, key)

        if k == 1:
            return one(0)
        outs = jax.lax.map(one, jnp.arange(k))
        return jax.tree_util.tree_map(lambda o: o.reshape((k * batch_size,) + o.shape[2:]),
                                      outs)
