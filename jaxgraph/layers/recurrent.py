"""Recurrent layers (SimpleRNN, GRU, LSTM) and the wrappers Bidirectional, TimeDistributed.

Weights use Keras's names, shapes and gate order, so `set_weights(keras.get_weights())`
reproduces a Keras model. The input projection of every timestep is one matmul outside
the loop; only the recurrent part runs inside `jax.lax.scan`, which also makes
sequences of unknown length (`Input(shape=(None, features))`) work unchanged.

Masked timesteps behave as in Keras 3's JAX backend: the state is carried over and the
step outputs the previous output (the first state), or zeros when
`zero_output_for_mask=True` (which Bidirectional forces for returned sequences).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import activations, constraints, initializers, regularizers
from ..random import flat_draw
from .base import InputSpec, Layer, Weight
from .serialization import deserialize_layer, serialize_layer


def _clamp_rate(rate, what, owner):
    rate = float(rate)
    if rate != rate:  # NaN
        raise ValueError(f"{owner}: {what} must be a float in [0, 1], got {rate}")
    return min(1.0, max(0.0, rate))


def _dropout_keep(key, shape, rate, dtype):
    """Keras's dropout mask: 0 for dropped units, 1 / (1 - rate) for kept ones."""
    keep = flat_draw(jax.random.bernoulli, key, shape, p=1.0 - rate)
    return jnp.where(keep, 1.0 / (1.0 - rate), 0.0).astype(dtype)


class _ForgetBiasInitializer:
    """LSTM bias with the forget-gate block set to one (Jozefowicz et al., 2015)."""

    def __init__(self, base, units):
        self.base = base
        self.units = units

    def __call__(self, key, shape, dtype=jnp.float32):
        u = self.units
        k1, k2 = jax.random.split(key)
        return jnp.concatenate([
            self.base(k1, (u,), dtype),
            jnp.ones((u,), dtype),
            self.base(k2, (2 * u,), dtype),
        ])

    def get_config(self):
        return {"units": self.units}


# ---------------------------------------------------------------------------- the loop


class _Spec(NamedTuple):
    """Everything static about one recurrence; hashable, so compiled loops are reused."""

    kind: str  # "simple", "gru" or "lstm"
    units: int
    activation: Callable
    recurrent_activation: Callable | None
    use_bias: bool
    reset_after: bool
    go_backwards: bool
    unroll: bool
    zero_output_for_mask: bool
    collect: bool  # whether per-step outputs are needed


def _recurrent(h, kernel, rec_mask, gates, units):
    """h @ recurrent_kernel[:, blocks], with one dropout mask per block if given."""
    if rec_mask is None:
        return jnp.matmul(h, kernel[:, gates[0] * units:(gates[-1] + 1) * units])
    return jnp.concatenate(
        [jnp.matmul(h * rec_mask[g], kernel[:, g * units:(g + 1) * units]) for g in gates],
        axis=-1)


def _simple_step(spec, rec_w, rec_mask, zx, states):
    h = states[0]
    if rec_mask is not None:
        h = h * rec_mask
    out = spec.activation(zx + jnp.matmul(h, rec_w["recurrent_kernel"]))
    return out, (out,)


def _gru_step(spec, rec_w, rec_mask, zx, states):
    h = states[0]
    u = spec.units
    kernel = rec_w["recurrent_kernel"]
    x_z, x_r, x_h = zx[:, :u], zx[:, u:2 * u], zx[:, 2 * u:]
    if spec.reset_after:
        inner = _recurrent(h, kernel, rec_mask, (0, 1, 2), u)
        if spec.use_bias:
            inner = inner + rec_w["recurrent_bias"]
        z = spec.recurrent_activation(x_z + inner[:, :u])
        r = spec.recurrent_activation(x_r + inner[:, u:2 * u])
        hh = spec.activation(x_h + r * inner[:, 2 * u:])
    else:
        inner = _recurrent(h, kernel, rec_mask, (0, 1), u)
        z = spec.recurrent_activation(x_z + inner[:, :u])
        r = spec.recurrent_activation(x_r + inner[:, u:])
        h_h = h if rec_mask is None else h * rec_mask[2]
        hh = spec.activation(x_h + jnp.matmul(r * h_h, kernel[:, 2 * u:]))
    out = z * h + (1.0 - z) * hh
    return out, (out,)


def _lstm_step(spec, rec_w, rec_mask, zx, states):
    h, c = states
    u = spec.units
    z = zx + _recurrent(h, rec_w["recurrent_kernel"], rec_mask, (0, 1, 2, 3), u)
    i = spec.recurrent_activation(z[:, :u])
    f = spec.recurrent_activation(z[:, u:2 * u])
    c = f * c + i * spec.activation(z[:, 2 * u:3 * u])
    o = spec.recurrent_activation(z[:, 3 * u:])
    h = o * spec.activation(c)
    return h, (h, c)


_STEPS = {"simple": _simple_step, "gru": _gru_step, "lstm": _lstm_step}


@functools.partial(jax.jit, static_argnames=("spec",))
def _scan(spec, rec_w, rec_mask, zx, keep, states):
    """Run the recurrence over time-major `zx`; returns (final states, outputs or None).

    Masked steps (keep False) carry the states over and output the previous output
    (the first state) or zeros, as Keras 3 does.
    """
    step = _STEPS[spec.kind]

    def body(carry, xs):
        if keep is None:
            out, new = step(spec, rec_w, rec_mask, xs, carry)
        else:
            z_t, keep_t = xs
            out, new = step(spec, rec_w, rec_mask, z_t, carry)
            new = tuple(jnp.where(keep_t, n, s) for n, s in zip(new, carry))
            fallback = jnp.zeros_like(out) if spec.zero_output_for_mask else carry[0]
            out = jnp.where(keep_t, out, fallback)
        return new, (out if spec.collect else None)

    xs = zx if keep is None else (zx, keep)
    return jax.lax.scan(body, states, xs, reverse=spec.go_backwards, unroll=spec.unroll)


# ---------------------------------------------------------------------------- cells


def _check_units(units, owner):
    if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
        raise ValueError(f"{owner}: units must be a positive int, got {units!r}")


class _CellWeight(Weight):
    """A recurrent layer's weight, held by the layer (its values live in the layer's
    variables) and shown through its cell: Keras's path `lstm/lstm_cell/kernel`."""

    def __init__(self, weight: Weight, cell):
        super().__init__(weight.layer, weight.name, weight.shape, weight.dtype,
                         weight.initializer, weight.trainable, weight.regularizer,
                         weight.constraint)
        self.cell = cell

    @property
    def path(self) -> str:
        return f"{self.layer.name}/{self.cell.name}/{self.name}"


class _Cell(Layer):
    """One step of a recurrence: its configuration, weights and step function.

    Inside a recurrent layer (LSTM, `RNN(cell)`) the layer owns the weights and the
    cell shows the very same Weight objects; the whole sequence runs in the layer's
    scan (`_scan`), which calls the step functions of `_STEPS` that `call` uses here.
    """

    _kind = "simple"  # which step function of _STEPS runs the recurrence
    _gates = 1  # blocks of `units` columns in the kernels
    _n_states = 1

    def _setup(self, units, activation, recurrent_activation, use_bias, kernel_initializer,
               recurrent_initializer, bias_initializer, kernel_regularizer,
               recurrent_regularizer, bias_regularizer, kernel_constraint,
               recurrent_constraint, bias_constraint, dropout, recurrent_dropout, seed):
        kind = f"{type(self).__name__} {self.name!r}"
        _check_units(units, kind)
        self.units = units
        self.activation = activations.get(activation)
        if recurrent_activation is not None:
            self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.dropout = _clamp_rate(dropout, "dropout", kind)
        self.recurrent_dropout = _clamp_rate(recurrent_dropout, "recurrent_dropout", kind)
        self.seed = seed

    @property
    def state_size(self):
        return [self.units] * self._n_states if self._n_states > 1 else self.units

    @property
    def output_size(self) -> int:
        return self.units

    # ------------------------------------------------------------------ weights

    def _bias_shape(self):
        return (self._gates * self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def _input_bias(self, w):
        return w["bias"] if self.use_bias else None

    def _recurrent_weights(self, w):
        return {"recurrent_kernel": w["recurrent_kernel"]}

    def _add_weights(self, target, in_dim) -> None:
        """Declare kernel, recurrent_kernel and bias on `target` (this cell or its layer)."""
        width = self._gates * self.units
        target.add_weight("kernel", (in_dim, width), self.kernel_initializer,
                          regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        target.add_weight("recurrent_kernel", (self.units, width), self.recurrent_initializer,
                          regularizer=self.recurrent_regularizer,
                          constraint=self.recurrent_constraint)
        if self.use_bias:
            target.add_weight("bias", self._bias_shape(), self._bias_initializer(),
                              regularizer=self.bias_regularizer, constraint=self.bias_constraint)

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(f"{type(self).__name__} {self.name!r} needs a known feature "
                             f"dimension, got input shape {input_shape}")
        self._add_weights(self, in_dim)

    def _link(self, owner, input_shape) -> None:
        """Show `owner`'s weights (made by `_add_weights(owner, ...)`) as this cell's."""
        self.__dict__["_owner"] = owner
        self._weights = list(owner._weights)
        self.built = True
        self._build_input_shape = (input_shape[0], input_shape[-1])

    def _current_values(self):
        owner = self.__dict__.get("_owner")
        return owner._current_values() if owner is not None else super()._current_values()

    def _set_values(self, values) -> None:
        owner = self.__dict__.get("_owner")
        if owner is None:
            super()._set_values(values)
        else:
            owner._set_values({**owner._current_values(), **values})

    def _assign_value(self, name, value) -> None:
        owner = self.__dict__.get("_owner")
        if owner is None:
            super()._assign_value(name, value)
        else:
            owner._assign_value(name, value)

    # ------------------------------------------------------------------ one step

    def needs_rng(self) -> bool:
        return 0.0 < self.dropout < 1.0 or 0.0 < self.recurrent_dropout < 1.0

    def _spec(self, go_backwards=False, unroll=False, zero_output_for_mask=False,
              collect=False) -> _Spec:
        return _Spec(self._kind, self.units, self.activation,
                     getattr(self, "recurrent_activation", None), self.use_bias,
                     getattr(self, "reset_after", False), go_backwards, unroll,
                     zero_output_for_mask, collect)

    def call(self, w, inputs, states, training=False, rng=None):
        """Keras's `cell(inputs, states)`: `(output, new_states)` for one timestep."""
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        if len(states) != self._n_states:
            raise ValueError(f"{type(self).__name__} {self.name!r} has {self._n_states} "
                             f"state(s), got {len(states)}")
        x = jnp.asarray(inputs)
        rec_mask = None
        if training and rng is not None:
            k_in, k_rec = jax.random.split(rng)
            if 0.0 < self.dropout < 1.0:
                x = x * _dropout_keep(k_in, x.shape, self.dropout, x.dtype)
            if 0.0 < self.recurrent_dropout < 1.0:
                count = (self._gates,) if self._gates > 1 else ()
                rec_mask = _dropout_keep(k_rec, count + (x.shape[0], self.units),
                                         self.recurrent_dropout, x.dtype)
        zx = jnp.matmul(x, w["kernel"])
        bias = self._input_bias(w)
        if bias is not None:
            zx = zx + bias
        out, new = _STEPS[self._kind](self._spec(), self._recurrent_weights(w), rec_mask, zx,
                                      tuple(jnp.asarray(s, x.dtype) for s in states))
        return out, list(new)


class SimpleRNNCell(_Cell):
    """The step of SimpleRNN: `h = activation(x @ W + h @ U + b)`."""

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self._setup(units, activation, None, use_bias, kernel_initializer,
                    recurrent_initializer, bias_initializer, kernel_regularizer,
                    recurrent_regularizer, bias_regularizer, kernel_constraint,
                    recurrent_constraint, bias_constraint, dropout, recurrent_dropout, seed)


class GRUCell(_Cell):
    """The step of GRU, gates z, r, h; with reset_after the bias is (2, 3 * units)."""

    _kind = "gru"
    _gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, reset_after=True,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self._setup(units, activation, recurrent_activation, use_bias, kernel_initializer,
                    recurrent_initializer, bias_initializer, kernel_regularizer,
                    recurrent_regularizer, bias_regularizer, kernel_constraint,
                    recurrent_constraint, bias_constraint, dropout, recurrent_dropout, seed)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _input_bias(self, w):
        if not self.use_bias:
            return None
        return w["bias"][0] if self.reset_after else w["bias"]

    def _recurrent_weights(self, w):
        rec = {"recurrent_kernel": w["recurrent_kernel"]}
        if self.use_bias and self.reset_after:
            rec["recurrent_bias"] = w["bias"][1]
        return rec


class LSTMCell(_Cell):
    """The step of LSTM, gates i, f, c, o; states [h, c]."""

    _kind = "lstm"
    _gates = 4
    _n_states = 2

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self._setup(units, activation, recurrent_activation, use_bias, kernel_initializer,
                    recurrent_initializer, bias_initializer, kernel_regularizer,
                    recurrent_regularizer, bias_regularizer, kernel_constraint,
                    recurrent_constraint, bias_constraint, dropout, recurrent_dropout, seed)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _bias_initializer(self):
        if self.unit_forget_bias:
            return _ForgetBiasInitializer(self.bias_initializer, self.units)
        return self.bias_initializer


# ---------------------------------------------------------------------------- RNN base


def _from_cell(name):
    def get(self):
        return getattr(self.__dict__["cell"], name)

    def set_(self, value):
        setattr(self.__dict__["cell"], name, value)

    return property(get, set_, doc=f"The cell's `{name}`.")


class _RNN(Layer):
    """Shared plumbing of the recurrent layers: weights, dropout, masking, scan.

    The step's configuration and weights belong to `self.cell` (Keras's `layer.cell`);
    the attributes below read and write the cell's.
    """

    for _name in ("units", "activation", "recurrent_activation", "use_bias",
                  "kernel_initializer", "recurrent_initializer", "bias_initializer",
                  "kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
                  "kernel_constraint", "recurrent_constraint", "bias_constraint", "dropout",
                  "recurrent_dropout", "seed", "reset_after", "unit_forget_bias"):
        locals()[_name] = _from_cell(_name)
    del _name

    @property
    def _kind(self):
        return self.cell._kind

    @property
    def _gates(self):
        return self.cell._gates

    @property
    def _n_states(self):
        return self.cell._n_states

    def _configure(self, cell, return_sequences, return_state, go_backwards, stateful, unroll,
                   zero_output_for_mask):
        if stateful:
            raise NotImplementedError(
                f"{type(self).__name__} {self.name!r}: stateful=True is not supported; "
                "jaxgraph models are pure functions. Carry the state yourself: "
                "return_state=True gives the final states, and initial_state=[...] feeds "
                "them to the next call."
            )
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = False
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.supports_masking = True
        self.input_spec = InputSpec(ndim=3)

    @staticmethod
    def _check_cell_args(owner, units, dropout, recurrent_dropout):
        """The layer's own messages for arguments its cell would reject."""
        _check_units(units, owner)
        _clamp_rate(dropout, "dropout", owner)
        _clamp_rate(recurrent_dropout, "recurrent_dropout", owner)

    def _set_use_cudnn(self, use_cudnn):
        """Checked and kept for the config, as Keras does; XLA picks the kernels here."""
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"{type(self).__name__} {self.name!r}: use_cudnn must be 'auto', "
                             f"True or False, got {use_cudnn!r}")
        self.use_cudnn = use_cudnn

    # ------------------------------------------------------------------ weights

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} needs a known feature dimension, got "
                f"input shape {input_shape}"
            )
        cell = self.cell
        kept = cell.__dict__.get("_own_values") if cell.built and \
            cell.__dict__.get("_owner") is None else None
        cell._add_weights(self, in_dim)
        self._weights = [_CellWeight(w, cell) for w in self._weights]
        cell._link(self, input_shape)
        if kept is not None:  # a cell built and set before it was wrapped keeps its values
            self._values = dict(kept)
        self.input_spec = InputSpec(ndim=3, axes={-1: in_dim})
    # ------------------------------------------------------------------ shapes and masks

    def compute_output_shape(self, input_shape):
        batch, steps = input_shape[0], input_shape[1]
        out = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return [out] + [(batch, self.units)] * self._n_states
        return out

    def compute_output_spec(self, *args, **kwargs):
        init = kwargs.get("initial_state", args[1] if len(args) > 1 else None)
        if init is not None:
            self._check_initial_state(init)
        return super().compute_output_spec(*args, **kwargs)

    def compute_mask(self, inputs, mask=None):
        out_mask = mask if (mask is not None and self.return_sequences) else None
        if self.return_state:
            return [out_mask] + [None] * self._n_states
        return out_mask

    def needs_rng(self) -> bool:
        return 0.0 < self.dropout < 1.0 or 0.0 < self.recurrent_dropout < 1.0

    def _check_initial_state(self, init):
        states = list(init) if isinstance(init, (list, tuple)) else [init]
        if len(states) != self._n_states:
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) has {self._n_states} state(s) "
                f"but initial_state has {len(states)} tensor(s)"
            )
        for s in states:
            shape = tuple(s.shape)
            if len(shape) != 2 or (shape[-1] is not None and shape[-1] != self.units):
                raise ValueError(
                    f"Layer {self.name!r} ({type(self).__name__}): each initial state must "
                    f"have shape (batch, {self.units}), got {shape}"
                )
        return states

    # ------------------------------------------------------------------ the computation

    def _per_gate_masks(self) -> bool:
        """Keras's implementation 1: a separate dropout mask for each gate."""
        return self._gates > 1 and getattr(self, "implementation", 2) == 1

    def _dropout_masks(self, rng, training, batch, in_dim, dtype):
        """Input and recurrent masks, drawn once per sequence as Keras does."""
        in_mask = rec_mask = None
        if not training or rng is None:
            return in_mask, rec_mask
        k_in, k_rec = jax.random.split(rng)
        count = (self._gates,) if self._per_gate_masks() else ()
        if 0.0 < self.dropout < 1.0:
            in_mask = _dropout_keep(k_in, count + (batch, in_dim), self.dropout, dtype)
        if 0.0 < self.recurrent_dropout < 1.0:
            rec_count = (self._gates,) if self._gates > 1 else ()
            rec_mask = _dropout_keep(k_rec, rec_count + (batch, self.units),
                                     self.recurrent_dropout, dtype)
        return in_mask, rec_mask

    def _input_bias(self, w):
        return self.cell._input_bias(w)

    def _project_inputs(self, w, x, in_mask):
        """x @ kernel (+ bias) for all timesteps at once: (batch, time, gates * units)."""
        kernel = w["kernel"]
        if in_mask is None:
            z = jnp.matmul(x, kernel)
        elif in_mask.ndim == 2:
            z = jnp.matmul(x * in_mask[:, None, :], kernel)
        else:
            u = self.units
            z = jnp.concatenate(
                [jnp.matmul(x * in_mask[g][:, None, :], kernel[:, g * u:(g + 1) * u])
                 for g in range(self._gates)], axis=-1)
        bias = self._input_bias(w)
        return z if bias is None else z + bias

    def _recurrent_weights(self, w):
        return self.cell._recurrent_weights(w)

    def call(self, w, inputs, training=False, rng=None, mask=None, initial_state=None):
        x = inputs
        if x.ndim != 3:
            raise ValueError(
                f"Layer {self.name!r} expects inputs of shape (batch, time, features), got "
                f"{x.shape}"
            )
        batch = x.shape[0]
        if initial_state is None:
            states = tuple(jnp.zeros((batch, self.units), x.dtype)
                           for _ in range(self._n_states))
        else:
            states = tuple(jnp.asarray(s).astype(x.dtype)
                           for s in self._check_initial_state(initial_state))
        in_mask, rec_mask = self._dropout_masks(rng, training, batch, x.shape[-1], x.dtype)
        zx = jnp.swapaxes(self._project_inputs(w, x, in_mask), 0, 1)  # time-major

        keep = None
        if mask is not None:
            mask = jnp.asarray(mask)
            if mask.ndim == 3:
                mask = jnp.any(mask, axis=-1)
            keep = jnp.swapaxes(mask.astype(bool), 0, 1)[..., None]  # (time, batch, 1)
        collect = self.return_sequences or (keep is not None and self.zero_output_for_mask)
        spec = self.cell._spec(self.go_backwards, self.unroll, self.zero_output_for_mask,
                               collect)
        final, outs = _scan(spec, self._recurrent_weights(w), rec_mask, zx, keep, states)
        if self.return_sequences:
            output = jnp.swapaxes(outs, 0, 1)
            if self.go_backwards:  # Keras returns the outputs in processing order
                output = jnp.flip(output, axis=1)
        elif collect:
            output = outs[0] if self.go_backwards else outs[-1]
        else:
            output = final[0]
        if self.return_state:
            return [output, *final]
        return output


# ---------------------------------------------------------------------------- layers


class SimpleRNN(_RNN):
    """Fully connected recurrence `h = activation(x @ W + h @ U + b)`."""

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, seed=None,
                 zero_output_for_mask=False, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._check_cell_args(f"SimpleRNN {self.name!r}", units, dropout, recurrent_dropout)
        cell = SimpleRNNCell(
            units, activation=activation, use_bias=use_bias,
            kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint, dropout=dropout,
            recurrent_dropout=recurrent_dropout, seed=seed, dtype=self.dtype_policy,
            trainable=self.trainable, name="simple_rnn_cell")
        self._configure(cell, return_sequences, return_state, go_backwards, stateful, unroll,
                        zero_output_for_mask)


class GRU(_RNN):
    """Gated recurrent unit, gates z, r, h; `reset_after=True` (cuDNN-style) by default.

    With reset_after the bias is (2, 3 * units): input bias then recurrent bias.
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, unroll=False, reset_after=True,
                 use_cudnn="auto", implementation=2, zero_output_for_mask=False, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._check_cell_args(f"GRU {self.name!r}", units, dropout, recurrent_dropout)
        cell = GRUCell(
            units, activation=activation, recurrent_activation=recurrent_activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint,
            dropout=dropout, recurrent_dropout=recurrent_dropout, reset_after=reset_after,
            seed=seed, dtype=self.dtype_policy, trainable=self.trainable, name="gru_cell")
        self._configure(cell, return_sequences, return_state, go_backwards, stateful, unroll,
                        zero_output_for_mask)
        self._set_use_cudnn(use_cudnn)
        self.implementation = 1 if self.recurrent_dropout else int(implementation)


class LSTM(_RNN):
    """Long short-term memory, gates i, f, c, o; states [h, c]."""

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, seed=None, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, unroll=False,
                 use_cudnn="auto", implementation=2, zero_output_for_mask=False, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._check_cell_args(f"LSTM {self.name!r}", units, dropout, recurrent_dropout)
        cell = LSTMCell(
            units, activation=activation, recurrent_activation=recurrent_activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias, kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint, dropout=dropout,
            recurrent_dropout=recurrent_dropout, seed=seed, dtype=self.dtype_policy,
            trainable=self.trainable, name="lstm_cell")
        self._configure(cell, return_sequences, return_state, go_backwards, stateful, unroll,
                        zero_output_for_mask)
        self._set_use_cudnn(use_cudnn)
        self.implementation = 1 if self.recurrent_dropout else int(implementation)


class RNN(_RNN):
    """Keras's `RNN(cell)`: the sequence loop around an LSTMCell, GRUCell or
    SimpleRNNCell, run by the same scan as LSTM / GRU / SimpleRNN."""

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(cell, dict):
            cell = deserialize_layer(cell)
        if not isinstance(cell, _Cell):
            raise ValueError(
                f"RNN {self.name!r}: cell must be an LSTMCell, GRUCell or SimpleRNNCell, got "
                f"{type(cell).__name__}"
            )
        if cell.__dict__.get("_owner") is not None:
            raise ValueError(f"RNN {self.name!r}: cell {cell.name!r} already belongs to layer "
                             f"{cell.__dict__['_owner'].name!r}")
        self._configure(cell, return_sequences, return_state, go_backwards, stateful, unroll,
                        zero_output_for_mask)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["cell"] = deserialize_layer(config["cell"], custom_objects)
        return cls(**config)


# ---------------------------------------------------------------------------- wrappers


def _nest(tree: dict, path) -> dict:
    """The dict at `path[:-1]` inside `tree`, made where missing."""
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    return tree


class _Wrapper(Layer):
    """A layer whose weights are those of inner layers (optionally name-prefixed).

    The wrapper stores no values of its own: `_values` reads and writes the inner
    layers' caches, so `wrapper.get_weights()` and `wrapper.forward_layer.get_weights()`
    always agree, while the variables pytree has one entry, under the wrapper.
    """

    training_by_default = None  # Keras's `call(training=None)`: follows the call context

    def _parts(self) -> list[tuple[str, Layer]]:
        raise NotImplementedError

    @property
    def _values(self):
        parts = self.__dict__.get("_linked_parts")
        if not parts:
            return None
        merged = {}
        for prefix, layer in parts:
            if not layer._weights:
                continue
            if layer._values is None:
                return None
            merged.update({prefix + k: v for k, v in layer._values.items()})
        return merged

    @_values.setter
    def _values(self, values):
        parts = self.__dict__.get("_linked_parts")
        if values is None or not parts:
            return
        for prefix, layer in parts:
            names = {w.name for w in layer._weights}
            if names:
                layer._values = {k[len(prefix):]: v for k, v in values.items()
                                 if k.startswith(prefix) and k[len(prefix):] in names}

    def _link_weights(self) -> None:
        """Expose the built inner layers' weights as this layer's own."""
        parts = self._parts()
        self._weights = [
            Weight(self, prefix + w.name, w.shape, w.dtype, w.initializer, w.trainable,
                   w.regularizer, w.constraint)
            for prefix, layer in parts for w in layer._weights
        ]
        self.__dict__["_linked_parts"] = parts

    @property
    def weights(self) -> list[Weight]:
        """Part by part, each in its own order, as Keras lists a wrapper's weights."""
        parts = self.__dict__.get("_linked_parts")
        if not parts:
            return super().weights
        mine = {w.name: w for w in self._weights}
        return [mine[prefix + w.name] for prefix, layer in parts for w in layer.weights]

    @property
    def trainable_weights(self) -> list[Weight]:
        """Those of the trainable inner layers (a wrapped model may freeze some)."""
        if not self.trainable:
            return []
        frozen = {prefix + w.name for prefix, layer in self.__dict__.get("_linked_parts") or ()
                  if not layer.trainable for w in layer._weights}
        return [w for w in self.weights if w.trainable and w.name not in frozen]

    @property
    def non_trainable_weights(self) -> list[Weight]:
        training = {w.name for w in self.trainable_weights}
        return [w for w in self.weights if w.name not in training]

    @staticmethod
    def _build_inner(layer, input_shape) -> None:
        if layer.built:
            return
        if isinstance(layer.input_spec, InputSpec):
            layer.input_spec.check(layer.name, tuple(input_shape))
        layer.build(input_shape)
        layer.built = True
        layer._build_input_shape = tuple(input_shape)

    @property
    def trainable(self) -> bool:
        parts = self.__dict__.get("_all_inner") or []
        return self._trainable and all(layer.trainable for layer in parts)

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for layer in self.__dict__.get("_all_inner") or []:
            layer.trainable = value


def _is_model(layer) -> bool:
    from ..graph.functional import Functional

    return isinstance(layer, Functional)


def _check_wrappable(layer, owner, models=False):
    if not isinstance(layer, Layer):
        raise ValueError(f"{owner} needs a Layer instance, got {layer!r}")
    if _is_model(layer) and not models:
        raise TypeError(
            f"{owner} cannot wrap a Model ({layer.name!r}); wrap its layers instead"
        )


class Bidirectional(_Wrapper):
    """Runs a recurrent layer forwards and a copy backwards, merging their outputs.

    Weights are the forward layer's then the backward layer's (Keras's order); in the
    variables pytree they are named `forward_<name>` and `backward_<name>`.
    """

    _MODES = ("concat", "sum", "mul", "ave", None)

    def __init__(self, layer, merge_mode="concat", backward_layer=None, **kwargs):
        if isinstance(layer, dict):
            layer = deserialize_layer(layer)
        if isinstance(backward_layer, dict):
            backward_layer = deserialize_layer(backward_layer)
        super().__init__(**kwargs)
        _check_wrappable(layer, f"Bidirectional {self.name!r}")
        if merge_mode not in self._MODES:
            raise ValueError(
                f"Bidirectional {self.name!r}: merge_mode must be one of {self._MODES}, "
                f"got {merge_mode!r}"
            )
        for attr in ("go_backwards", "return_sequences", "return_state"):
            if not hasattr(layer, attr):
                raise ValueError(
                    f"Bidirectional {self.name!r} needs a recurrent layer (with "
                    f"{attr!r}), got {type(layer).__name__}"
                )
        base_name = layer.name.removeprefix("forward_").removeprefix("backward_")
        fwd_cfg = serialize_layer(layer)
        fwd_cfg["config"]["name"] = f"forward_{base_name}"
        self.forward_layer = deserialize_layer(fwd_cfg)
        self._custom_backward = backward_layer is not None
        if backward_layer is None:
            bwd_cfg = serialize_layer(layer)
            bwd_cfg["config"]["name"] = f"backward_{base_name}"
            bwd_cfg["config"]["go_backwards"] = not layer.go_backwards
            backward_layer = deserialize_layer(bwd_cfg)
        else:
            _check_wrappable(backward_layer, f"Bidirectional {self.name!r}")
        self.backward_layer = backward_layer
        if self.forward_layer.go_backwards == self.backward_layer.go_backwards:
            raise ValueError(
                f"Bidirectional {self.name!r}: the forward and backward layers need different "
                f"go_backwards values, both are {self.forward_layer.go_backwards}"
            )
        for attr in ("return_sequences", "return_state"):
            a, b = getattr(self.forward_layer, attr), getattr(self.backward_layer, attr)
            if a != b:
                raise ValueError(
                    f"Bidirectional {self.name!r}: forward and backward layers must agree on "
                    f"{attr} (got {a} and {b})"
                )
        for sub in (self.forward_layer, self.backward_layer):
            if hasattr(sub, "zero_output_for_mask"):
                sub.zero_output_for_mask = sub.return_sequences
        self.__dict__["_all_inner"] = [self.forward_layer, self.backward_layer]
        self.merge_mode = merge_mode
        self.return_sequences = self.forward_layer.return_sequences
        self.return_state = self.forward_layer.return_state
        self.stateful = False
        self.supports_masking = True
        self.input_spec = self.forward_layer.input_spec

    def _parts(self):
        return [("forward_", self.forward_layer), ("backward_", self.backward_layer)]

    def build(self, input_shape):
        for sub in (self.forward_layer, self.backward_layer):
            self._build_inner(sub, input_shape)
        self._link_weights()
        self.input_spec = self.forward_layer.input_spec

    def needs_rng(self) -> bool:
        return self.forward_layer.needs_rng() or self.backward_layer.needs_rng()

    def forward(self, w, inputs, training=False, rng=None, mask=None, initial_state=None):
        sub_w = [{k[len(p):]: v for k, v in w.items() if k.startswith(p)}
                 for p, _ in self._parts()]
        keys = (None, None) if rng is None else tuple(jax.random.split(rng))
        states = (None, None)
        if initial_state is not None:
            initial_state = list(initial_state)
            half = len(initial_state) // 2
            states = (initial_state[:half], initial_state[half:])
        results, updates = [], {}
        for (prefix, sub), ws, key, st in zip(self._parts(), sub_w, keys, states):
            extra = {} if st is None else {"initial_state": st}
            y, upd = sub.forward(ws, inputs, training=training, rng=key, mask=mask, **extra)
            results.append(y)
            updates.update({prefix + k: v for k, v in upd.items()})
        y, y_rev = results
        state_out = []
        if self.return_state:
            state_out = list(y[1:]) + list(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = jnp.flip(y_rev, axis=1)
        if self.merge_mode == "concat":
            out = [jnp.concatenate([y, y_rev], axis=-1)]
        elif self.merge_mode == "sum":
            out = [y + y_rev]
        elif self.merge_mode == "ave":
            out = [(y + y_rev) / 2]
        elif self.merge_mode == "mul":
            out = [y * y_rev]
        else:
            out = [y, y_rev]
        if self.return_state or self.merge_mode is None:
            return out + state_out, updates
        return out[0], updates

    def compute_output_shape(self, input_shape):
        shape = self.forward_layer.compute_output_shape(input_shape)
        states = []
        if self.return_state:
            shape, states = shape[0], list(shape[1:])
        shape = tuple(shape)
        if self.merge_mode == "concat":
            out = [shape[:-1] + (None if shape[-1] is None else 2 * shape[-1],)]
        elif self.merge_mode is None:
            out = [shape, shape]
        else:
            out = [shape]
        if self.return_state or self.merge_mode is None:
            return out + states + states
        return out[0]

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        out_mask = mask if self.return_sequences else None
        masks = [out_mask, out_mask] if self.merge_mode is None else [out_mask]
        if self.return_state:
            n_states = getattr(self.forward_layer, "_n_states", 1)
            return masks + [None] * (2 * n_states)
        return masks if self.merge_mode is None else masks[0]

    def get_config(self):
        config = super().get_config()
        config["layer"] = serialize_layer(self.forward_layer)
        if self._custom_backward:
            config["backward_layer"] = serialize_layer(self.backward_layer)
        else:
            config.pop("backward_layer", None)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["layer"] = deserialize_layer(config["layer"], custom_objects)
        if config.get("backward_layer") is not None:
            config["backward_layer"] = deserialize_layer(config["backward_layer"],
                                                         custom_objects)
        return cls(**config)


class TimeDistributed(_Wrapper):
    """Applies a layer, or a whole model, to every timestep by folding time into the batch
    (one call, not a loop).

    Its weights are the wrapped layer's own (same names), so Keras weight lists load
    directly. A wrapped model's weights are named `<layer path>/<weight>` (`conv/kernel`),
    Keras's weight paths, in the model's weight order.
    """

    def __init__(self, layer, **kwargs):
        if isinstance(layer, dict):
            layer = deserialize_layer(layer)
        super().__init__(**kwargs)
        _check_wrappable(layer, f"TimeDistributed {self.name!r}", models=True)
        self.layer = layer
        self.__dict__["_all_inner"] = [layer]
        self.supports_masking = True
        self.input_spec = InputSpec(min_ndim=3)

    def _parts(self):
        if _is_model(self.layer):
            return [("/".join(path) + "/", layer) for layer, path in self.layer._leaf_paths()]
        return [("", self.layer)]

    @staticmethod
    def _child_shape(input_shape):
        return (input_shape[0],) + tuple(input_shape[2:])

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(
                f"TimeDistributed {self.name!r} needs inputs of rank >= 3 (batch, time, ...), "
                f"got shape {input_shape}"
            )
        self._build_inner(self.layer, self._child_shape(input_shape))
        self._link_weights()

    def needs_rng(self) -> bool:
        return self.layer.needs_rng()

    def forward(self, w, inputs, training=False, rng=None, mask=None, **kwargs):
        batch, steps = inputs.shape[0], inputs.shape[1]
        flat = inputs.reshape((batch * steps,) + inputs.shape[2:])
        if _is_model(self.layer):
            if kwargs:
                raise TypeError(f"TimeDistributed {self.name!r} passes no call arguments to "
                                f"model {self.layer.name!r}; got {sorted(kwargs)}")
            out, updates = self._model_forward(w, flat, training, rng)
        else:
            inner_mask = None
            if mask is not None and mask.ndim > 2:  # per-element masks survive the folding
                inner_mask = mask.reshape((batch * steps,) + mask.shape[2:])
            out, updates = self.layer.forward(w, flat, training=training, rng=rng,
                                              mask=inner_mask, **kwargs)
        out = jax.tree_util.tree_map(lambda o: o.reshape((batch, steps) + o.shape[1:]), out)
        return out, updates

    def _model_forward(self, w, flat, training, rng):
        """Run the wrapped model's graph on its share of `w`; its state changes (moving
        statistics) come back as this layer's updates, its added losses as this layer's."""
        entries = [(prefix, layer, path) for (prefix, layer), (_, path)
                   in zip(self._parts(), self.layer._leaf_paths())]
        variables = {"params": {}, "state": {}}
        for prefix, layer, path in entries:
            for kind, trainable in (("params", True), ("state", False)):
                values = {x.name: w[prefix + x.name] for x in layer._weights
                          if x.trainable == trainable}
                if values:
                    _nest(variables[kind], path)[path[-1]] = values
        out, new_state, added = self.layer._run(variables, flat, training=training, rng=rng)
        self.add_loss(added)
        updates = {}
        for prefix, layer, path in entries:
            if any(not x.trainable for x in layer._weights):
                values = _nest(new_state, path)[path[-1]]
                updates.update({prefix + k: v for k, v in values.items()})
        return out, updates

    def compute_output_shape(self, input_shape):
        child = self.layer.compute_output_shape(self._child_shape(input_shape))
        return (child[0], input_shape[1]) + tuple(child[1:])

    def compute_output_spec(self, *args, **kwargs):
        if _is_model(self.layer):
            return self._model_output_spec(args[0])
        try:
            return super().compute_output_spec(*args, **kwargs)
        except NotImplementedError:  # the inner layer infers its shapes by tracing
            return self._infer_output_spec(args, kwargs)

    def _model_output_spec(self, x):
        from ..graph.tensor import SymbolicTensor, is_symbolic

        child = SymbolicTensor(self._child_shape(tuple(x.shape)), x.dtype)
        try:
            out = self.layer.compute_output_spec(child)
        except ValueError as err:
            raise ValueError(
                f"TimeDistributed {self.name!r} feeds each timestep of its input "
                f"{tuple(x.shape)} to model {self.layer.name!r} as shape {child.shape}: {err}"
            ) from None
        return jax.tree_util.tree_map(
            lambda o: SymbolicTensor((o.shape[0], x.shape[1]) + tuple(o.shape[1:]), o.dtype),
            out, is_leaf=is_symbolic)

    def get_config(self):
        config = super().get_config()
        config["layer"] = serialize_layer(self.layer)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["layer"] = deserialize_layer(config["layer"], custom_objects)
        return cls(**config)
