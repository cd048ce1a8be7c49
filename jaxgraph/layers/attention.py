"""Attention: EinsumDense, MultiHeadAttention, Attention (Luong) and AdditiveAttention (Bahdanau).

Weight names, shapes and order follow Keras 3, so `set_weights(keras_layer.get_weights())`
reproduces a Keras layer. `MultiHeadAttention` owns no sublayers: its four projections are
weights named like Keras's variable paths (`query/kernel`, `query/bias`, ...,
`attention_output/bias`), so `layer.weights[i].path` equals the Keras variable's path.

Masks, as in Keras 3: a layer called on several tensors receives each one's propagated
mask as `<argument>_mask`, so `MultiHeadAttention(query, value)` after
`Embedding(mask_zero=True)` gets `query_mask` and `value_mask` (and `key_mask`) without
being told; masks passed by hand are used as given. `Attention` and `AdditiveAttention`
are called on a list, so they receive `[query_mask, value_mask]` as `mask`.
"""

from __future__ import annotations

import math
import string

import jax
import jax.numpy as jnp

from .. import activations, constraints, initializers, regularizers
from .base import InputSpec, Layer

_LARGE_NEGATIVE = -1e9
_LETTERS = string.ascii_lowercase


# ---------------------------------------------------------------------------- einsum helpers


def _with_fan_axes(initializer, input_axes, output_axes):
    """A VarianceScaling initializer whose fans come from the einsum's kernel axes."""
    if isinstance(initializer, initializers.VarianceScaling) and (
            initializer.input_axes is None or initializer.output_axes is None):
        config = dict(initializer.get_config())
        config["input_axes"] = list(input_axes)
        config["output_axes"] = list(output_axes)
        return type(initializer).from_config(config)
    return initializer


def _split_equation(equation: str, owner: str):
    eq = str(equation).replace(" ", "")
    try:
        lhs, out_spec = eq.split("->")
        in_spec, w_spec = lhs.split(",")
    except ValueError:
        raise ValueError(
            f"{owner}: equation must look like 'ab,bc->ac' (input,kernel->output), "
            f"got {equation!r}"
        ) from None
    for spec, what in ((in_spec.replace("...", ""), "input"), (w_spec, "kernel"),
                       (out_spec.replace("...", ""), "output")):
        if not spec.isalpha() and spec:
            raise ValueError(f"{owner}: the {what} part of {equation!r} must be letters")
        if len(set(spec)) != len(spec):
            raise ValueError(f"{owner}: repeated letter in the {what} part of {equation!r}")
    if "..." in w_spec or not w_spec:
        raise ValueError(f"{owner}: the kernel part of {equation!r} must be explicit letters")
    return in_spec, w_spec, out_spec


def analyze_einsum(equation, bias_axes, input_shape, partial_output_shape, owner="EinsumDense"):
    """Shapes implied by an EinsumDense equation.

    Returns `(kernel_shape, bias_shape or None, full_output_shape, kernel_input_axes,
    kernel_output_axes)`. `partial_output_shape` lists the output's sizes without the batch
    axis and without the axes an ellipsis stands for; `None` entries are taken from the
    input axis of the same letter.
    """
    in_spec, w_spec, out_spec = _split_equation(equation, owner)
    input_shape = tuple(input_shape)
    if "..." in in_spec or "..." in out_spec:
        if in_spec.startswith("...") and out_spec.startswith("..."):
            elision = "left"
        elif in_spec.endswith("...") and out_spec.endswith("..."):
            elision = "right"
        else:
            raise ValueError(
                f"{owner}: an ellipsis must start (or end) both the input and the output of "
                f"{equation!r}"
            )
    else:
        elision = None
    in_letters = in_spec.replace("...", "")
    out_letters = out_spec.replace("...", "")
    n_elided = len(input_shape) - len(in_letters)
    if n_elided < 0 or (elision is None and n_elided != 0):
        raise ValueError(
            f"{owner}: equation {equation!r} expects inputs of rank {len(in_letters)}, "
            f"got shape {input_shape}"
        )
    if elision == "left":
        in_dims, elided = input_shape[n_elided:], input_shape[:n_elided]
    else:
        in_dims, elided = input_shape[:len(in_letters)], input_shape[len(in_letters):]
    partial = list(partial_output_shape)
    explicit = partial if elision == "left" else [input_shape[0]] + partial
    if len(explicit) != len(out_letters):
        expected = len(out_letters) - (0 if elision == "left" else 1)
        raise ValueError(
            f"{owner}: output_shape {tuple(partial_output_shape)} must have {expected} "
            f"entries for equation {equation!r} (the batch axis and the axes an ellipsis "
            "stands for are not listed)"
        )
    for i, c in enumerate(out_letters):
        if c in in_letters:
            got = in_dims[in_letters.index(c)]
            if i == 0 and elision != "left":
                explicit[i] = got
            elif explicit[i] is None:
                explicit[i] = got
            elif got is not None and explicit[i] != got:
                raise ValueError(
                    f"{owner}: output axis {c!r} has size {explicit[i]} in output_shape but "
                    f"{got} in the input (shape {input_shape}, equation {equation!r})"
                )
    kernel_shape = []
    for c in w_spec:
        if c in in_letters:
            kernel_shape.append(in_dims[in_letters.index(c)])
        elif c in out_letters:
            kernel_shape.append(explicit[out_letters.index(c)])
        else:
            raise ValueError(
                f"{owner}: kernel letter {c!r} of {equation!r} appears in neither the input "
                "nor the output"
            )
    input_axes = [i for i, c in enumerate(w_spec) if c in in_letters]
    output_axes = [i for i, c in enumerate(w_spec) if c in out_letters]
    full_output = (list(elided) + explicit) if elision == "left" else (explicit + list(elided))
    bias_shape = None
    if bias_axes:
        for c in bias_axes:
            if c not in out_letters:
                raise ValueError(
                    f"{owner}: bias axis {c!r} is not an output axis of {equation!r}"
                )
        first = min(out_letters.index(c) for c in bias_axes)
        bias_shape = [explicit[out_letters.index(c)] if c in bias_axes else 1
                      for c in out_letters[first:]]
        if elision == "right":
            bias_shape += [1] * n_elided
    return (tuple(kernel_shape), None if bias_shape is None else tuple(bias_shape),
            tuple(full_output), input_axes, output_axes)


def _projection_equation(free_dims: int, bound_dims: int, output_dims: int):
    """(equation, bias axes, output rank) of a dense projection, in Keras's spelling.

    The input is `free + bound` letters, the kernel `bound + output` letters and the
    result `free + output` letters: `abc,cde->abde` projects (B, T, dim) to (B, T, N, H).
    """
    free = _LETTERS[:free_dims]
    bound = _LETTERS[free_dims:free_dims + bound_dims]
    out = _LETTERS[free_dims + bound_dims:free_dims + bound_dims + output_dims]
    return f"{free}{bound},{bound}{out}->{free}{out}", out, free_dims + output_dims


def _attention_equations(rank: int, attn_axes: tuple):
    """Einsums of the scores (key x query) and of the combination (scores x value).

    Projected tensors are (batch, <other axes>, <attention axes>, heads, channels); the
    scores are (<batch axes, heads>, <query attention axes>, <key attention axes>).
    """
    target = _LETTERS[:rank]
    batch_axes = [i for i in range(rank - 1) if i not in attn_axes]
    source = list(target)
    for k, axis in enumerate(attn_axes):
        source[axis] = _LETTERS[rank + k]
    source = "".join(source)
    product = ("".join(target[i] for i in batch_axes) + "".join(target[i] for i in attn_axes)
               + "".join(source[i] for i in attn_axes))
    return f"{source},{target}->{product}", f"{product},{source}->{target}", len(product)


def _as_tuple_shape(shape):
    if shape is None:
        return None
    if isinstance(shape, int):
        return (int(shape),)
    return tuple(None if d is None else int(d) for d in shape)


# ---------------------------------------------------------------------------- EinsumDense


class EinsumDense(Layer):
    """A dense layer written as an einsum: `activation(einsum(equation, x, kernel) + bias)`.

    `EinsumDense("abc,cd->abd", output_shape=(None, 64), bias_axes="d")` is a Dense(64)
    on the last axis of a (batch, time, channels) input.
    """

    def __init__(self, equation, output_shape, activation=None, bias_axes=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        owner = f"EinsumDense {self.name!r}"
        _split_equation(equation, owner)
        self.equation = str(equation)
        self.partial_output_shape = _as_tuple_shape(output_shape)
        self.bias_axes = bias_axes or None
        self.activation = activations.get(activation)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def _analyze(self, input_shape):
        return analyze_einsum(self.equation, self.bias_axes, input_shape,
                              self.partial_output_shape, f"EinsumDense {self.name!r}")

    def build(self, input_shape):
        kernel_shape, bias_shape, _, in_axes, out_axes = self._analyze(input_shape)
        if any(d is None for d in kernel_shape):
            raise ValueError(
                f"EinsumDense {self.name!r}: kernel shape {kernel_shape} depends on an "
                f"unknown input dimension (input shape {tuple(input_shape)})"
            )
        self.add_weight("kernel", kernel_shape,
                        _with_fan_axes(self.kernel_initializer, in_axes, out_axes),
                        regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        if bias_shape is not None:
            self.add_weight("bias", bias_shape, self.bias_initializer,
                            regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.input_spec = InputSpec(ndim=len(input_shape))

    def call(self, w, x):
        y = jnp.einsum(self.equation, x, w["kernel"])
        if "bias" in w:
            y = y + w["bias"]
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        return self._analyze(input_shape)[2]


# ---------------------------------------------------------------------------- MultiHeadAttention


def _masked_softmax(scores, mask, axes, zero_masked: bool):
    """Softmax over `axes`; masked entries get no weight (rows with nothing left are 0
    when `zero_masked`, uniform otherwise, as Keras's two attention paths do)."""
    if mask is not None:
        fill = -3e4 if scores.dtype == jnp.float16 else _LARGE_NEGATIVE
        scores = jnp.where(mask, scores, jnp.asarray(fill, scores.dtype))
    probs = jax.nn.softmax(scores, axis=axes)
    if mask is not None and zero_masked:
        probs = jnp.where(mask, probs, jnp.zeros((), probs.dtype))
    return probs


def _dropout(x, rate, rng):
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))


def _causal_mask(q_len: int, v_len: int):
    """(1, T, S): query position i sees key positions j <= i."""
    return (jnp.arange(q_len)[:, None] >= jnp.arange(v_len)[None, :])[None]


class MultiHeadAttention(Layer):
    """Multi-head attention (Vaswani et al., 2017) with Keras 3's arguments and weights.

    Called as `layer(query, value, key=None, query_mask=None, value_mask=None,
    key_mask=None, attention_mask=None, return_attention_scores=False,
    use_causal_mask=False)`; returns `(B, T, dim)` (or `output_shape`), plus the scores
    `(B, heads, T, S)` when `return_attention_scores=True`.
    """

    training_by_default = None  # Keras's `call(training=None)`: follows the call context

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True,
                 output_shape=None, attention_axes=None, sliding_window=None,
                 flash_attention=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 use_gate=False, seed=None, **kwargs):
        # Keras gives the activity regularizer to the four projections, not to the layer.
        super().__init__(**kwargs)
        owner = f"MultiHeadAttention {self.name!r}"
        if int(num_heads) <= 0 or int(key_dim) <= 0:
            raise ValueError(f"{owner}: num_heads and key_dim must be positive, got "
                             f"num_heads={num_heads}, key_dim={key_dim}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"{owner}: dropout must be in [0, 1), got {dropout}")
        if flash_attention and float(dropout) > 0:
            raise ValueError(f"{owner}: dropout is not supported with flash attention; "
                             "set dropout=0.0 to use flash_attention=True")
        self.num_heads = int(num_heads)
        self.key_dim = int(key_dim)
        self.value_dim = int(value_dim) if value_dim else self.key_dim
        self.dropout = float(dropout)
        self.use_bias = bool(use_bias)
        self.partial_output_shape = _as_tuple_shape(output_shape)
        if isinstance(attention_axes, int):
            attention_axes = (attention_axes,)
        self.attention_axes = None if attention_axes is None else tuple(attention_axes)
        if sliding_window is not None and int(sliding_window) <= 0:
            raise ValueError(f"{owner}: sliding_window must be a positive int, "
                             f"got {sliding_window}")
        self.sliding_window = None if sliding_window is None else int(sliding_window)
        self.use_gate = bool(use_gate)
        self.flash_attention = flash_attention
        self.seed = seed
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.projection_activity_regularizer = regularizers.get(activity_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.supports_masking = True
        self._inverse_sqrt_key_dim = 1.0 / math.sqrt(float(self.key_dim))

    # ------------------------------------------------------------------ building

    def needs_rng(self) -> bool:
        return self.dropout > 0

    def _projection(self, prefix, in_rank, bound_dims, in_shape, out_dims):
        """Declare `<prefix>/kernel` and `<prefix>/bias`; returns the projection's einsum."""
        equation, bias_axes, _ = _projection_equation(in_rank - bound_dims, bound_dims,
                                                      len(out_dims))
        partial = [None] * (in_rank - bound_dims - 1) + list(out_dims)
        kernel_shape, bias_shape, _, in_axes, out_axes = analyze_einsum(
            equation, bias_axes if self.use_bias else None, in_shape, partial,
            f"MultiHeadAttention {self.name!r}")
        self.add_weight(f"{prefix}/kernel", kernel_shape,
                        _with_fan_axes(self.kernel_initializer, in_axes, out_axes),
                        regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        if self.use_bias:
            self.add_weight(f"{prefix}/bias", bias_shape, self.bias_initializer,
                            regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        return equation

    def build(self, query_shape, value_shape=None, key_shape=None):
        owner = f"MultiHeadAttention {self.name!r}"
        if value_shape is None:
            raise ValueError(f"{owner}: build needs the query's and the value's shapes")
        query_shape, value_shape = tuple(query_shape), tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        if value_shape[1:-1] != key_shape[1:-1]:
            raise ValueError(
                f"{owner}: all dimensions of `value` and `key`, except the last one, must be "
                f"equal. Received: value_shape={value_shape} and key_shape={key_shape}"
            )
        if len(query_shape) < 3:
            raise ValueError(f"{owner}: query must have rank >= 3 (batch, ..., features), "
                             f"got shape {query_shape}")
        for shape, what in ((query_shape, "query"), (value_shape, "value"), (key_shape, "key")):
            if shape[-1] is None:
                raise ValueError(f"{owner}: the last dimension of `{what}` must be known, "
                                 f"got shape {shape}")
        heads = self.num_heads
        self._query_eq = self._projection("query", len(query_shape), 1, query_shape,
                                          [heads, self.key_dim])
        self._key_eq = self._projection("key", len(key_shape), 1, key_shape,
                                        [heads, self.key_dim])
        if self.use_gate:  # sigmoid(query projection) multiplies the attended values
            self._gate_eq = self._projection("gate", len(query_shape), 1, query_shape,
                                             [heads, self.value_dim])
        self._value_eq = self._projection("value", len(value_shape), 1, value_shape,
                                          [heads, self.value_dim])
        rank = len(query_shape) + 1  # projected: (batch, ..., heads, channels)
        if self.attention_axes is None:
            axes = tuple(range(1, rank - 2))
        else:
            axes = tuple(a if a >= 0 else (rank - 1) + a for a in self.attention_axes)
            if any(not 1 <= a < rank - 2 for a in axes):
                raise ValueError(
                    f"{owner}: attention_axes {self.attention_axes} must name axes of the "
                    f"query between 1 and {rank - 3} (not the batch or feature axis)"
                )
        self._attn_axes = axes
        self._dot_eq, self._combine_eq, scores_rank = _attention_equations(rank, axes)
        self._softmax_axes = tuple(range(scores_rank - len(axes), scores_rank))
        out_dims = list(self.partial_output_shape or (query_shape[-1],))
        projected = tuple(query_shape[:-1]) + (heads, self.value_dim)
        self._output_eq = self._projection("attention_output", len(projected), 2, projected,
                                           out_dims)
        self._fusable = len(query_shape) == 3 and self.dropout == 0.0

    def _build_from_call(self, args, kwargs):
        if self.built:
            return
        query = args[0]
        value = args[1] if len(args) > 1 else kwargs.get("value")
        key = args[2] if len(args) > 2 else kwargs.get("key")
        if value is None:
            raise ValueError(
                f"MultiHeadAttention {self.name!r} must be called as layer(query, value) "
                "(or layer(query, value, key))"
            )
        self.build(query.shape, value.shape, None if key is None else key.shape)
        self.built = True
        self._build_input_shape = tuple(query.shape)

    def _symbolic_call(self, args, kwargs):
        if args:
            self._build_from_call(args, kwargs)
        return super()._symbolic_call(args, kwargs)

    def _eager_call(self, args, kwargs):
        if args:
            self._build_from_call(
                tuple(a if a is None else jnp.asarray(a) for a in args), kwargs)
        return super()._eager_call(args, kwargs)

    def keras_weight_groups(self) -> dict[str, list[str]]:
        """Where Keras 3 weight files (`.weights.h5`, `.keras`) keep this layer's weights.

        Keras saves the projections as sublayers: `<layer>/query_dense/vars/0` is the
        query kernel, `.../vars/1` its bias, and so on (`_gate_dense` with `use_gate`); the
        layer's own `vars` group is empty. Maps each sub-group (relative to the layer's
        group, '' for its own) to the names of the weights it holds, in file order.
        """
        groups = {"": []}
        parts = [("key_dense", "key"), ("output_dense", "attention_output"),
                 ("query_dense", "query"), ("value_dense", "value")]
        if self.use_gate:
            parts.append(("_gate_dense", "gate"))
        for group, prefix in parts:
            groups[group] = [f"{prefix}/kernel"] + ([f"{prefix}/bias"] if self.use_bias else [])
        return groups

    # ------------------------------------------------------------------ computing

    def _project(self, w, prefix, equation, x, activation=None):
        y = jnp.einsum(equation, x, w[f"{prefix}/kernel"])
        if self.use_bias:
            y = y + w[f"{prefix}/bias"]
        if activation is not None:
            y = activation(y)
        reg = self.projection_activity_regularizer
        if reg is not None:
            self.add_loss(reg(y) / y.shape[0])
        return y

    def _gated(self, w, query, attended):
        if not self.use_gate:
            return attended
        return attended * self._project(w, "gate", self._gate_eq, query, jax.nn.sigmoid)

    def _attention_mask(self, query, value, query_mask, value_mask, key_mask,
                        attention_mask, use_causal_mask, key_given):
        mask = None
        if query_mask is not None:
            mask = jnp.asarray(query_mask).astype(bool)[..., None]  # (B, T, 1)
        for m in (value_mask, key_mask if key_given else None):
            if m is not None:
                m = jnp.asarray(m).astype(bool)[..., None, :]  # (B, 1, S)
                mask = m if mask is None else mask & m
        if use_causal_mask:
            causal = _causal_mask(query.shape[1], value.shape[1])
            mask = causal if mask is None else mask & causal
        if self.sliding_window is not None:
            rows = jnp.arange(query.shape[1])[:, None]
            cols = jnp.arange(value.shape[1])[None, :]
            band = (jnp.abs(rows - cols) < self.sliding_window)[None]
            mask = band if mask is None else mask & band
        if attention_mask is not None:
            given = jnp.asarray(attention_mask).astype(bool)
            mask = given if mask is None else given & mask
        return mask

    def call(self, w, query, value, key=None, query_mask=None, value_mask=None,
             key_mask=None, attention_mask=None, return_attention_scores=False,
             use_causal_mask=False, training=False, rng=None, mask=None):
        if query_mask is None:
            query_mask = mask
        key_given = key is not None and key is not value
        if key is None:
            key = value
        if self.flash_attention and return_attention_scores:
            raise ValueError(
                f"MultiHeadAttention {self.name!r}: attention scores cannot be returned "
                "with flash_attention=True"
            )
        attn_mask = self._attention_mask(query, value, query_mask, value_mask, key_mask,
                                         attention_mask, use_causal_mask, key_given)
        q = self._project(w, "query", self._query_eq, query)
        k = self._project(w, "key", self._key_eq, key)
        v = self._project(w, "value", self._value_eq, value)
        scores_rank = len(self._softmax_axes) * 2 + (q.ndim - 1 - len(self._attn_axes))
        if attn_mask is not None:
            expand_at = -len(self._attn_axes) * 2 - 1
            while attn_mask.ndim < scores_rank:
                attn_mask = jnp.expand_dims(attn_mask, expand_at)
        if self.flash_attention and self._fusable and self.value_dim == self.key_dim:
            # (B, T, N, H) layout, as jax.nn.dot_product_attention takes it; XLA (or cuDNN
            # on GPUs) picks the kernel.
            out = jax.nn.dot_product_attention(q, k, v, mask=attn_mask,
                                               scale=self._inverse_sqrt_key_dim)
            return self._project(w, "attention_output", self._output_eq,
                                 self._gated(w, query, out))
        q = q * jnp.asarray(self._inverse_sqrt_key_dim, q.dtype)
        scores = jnp.einsum(self._dot_eq, k, q)
        # Keras's fused path (no dropout, no scores requested, rank-3 inputs) leaves a
        # fully masked row uniform; its explicit path zeroes it. Do the same.
        zero_masked = return_attention_scores or not self._fusable
        probs = _masked_softmax(scores, attn_mask, self._softmax_axes, zero_masked)
        dropped = probs
        if training and self.dropout > 0 and rng is not None:
            dropped = _dropout(probs, self.dropout, rng)
        out = jnp.einsum(self._combine_eq, dropped, v)
        out = self._project(w, "attention_output", self._output_eq,
                            self._gated(w, query, out))
        if return_attention_scores:
            return out, probs
        return out


# ---------------------------------------------------------------------------- Attention


class Attention(Layer):
    """Dot-product (Luong) attention over `[query, value]` or `[query, value, key]`.

    `score_mode='dot'` scores `query @ key^T` (times a learned `scale` when
    `use_scale`); `'concat'` scores `concat_score_weight * sum(tanh(scale * (q + k)))`.
    """

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if score_mode not in ("dot", "concat"):
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: invalid score_mode {score_mode!r}; "
                "expected one of {'dot', 'concat'}"
            )
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"{type(self).__name__} {self.name!r}: dropout must be in "
                             f"[0, 1], got {dropout}")
        self.use_scale = bool(use_scale)
        self.score_mode = score_mode
        self.dropout = float(dropout)
        self.seed = seed
        self.supports_masking = True

    def needs_rng(self) -> bool:
        return self.dropout > 0

    def _check(self, inputs, mask=None):
        what = f"{type(self).__name__} layer {self.name!r}"
        if not isinstance(inputs, (list, tuple)) or any(
                x is None or isinstance(x, int) for x in inputs):
            raise ValueError(
                f"{what} must be called on a list of inputs, namely [query, value] or "
                f"[query, value, key]. Received: inputs={inputs}."
            )
        if not 2 <= len(inputs) <= 3:
            raise ValueError(
                f"{what} accepts inputs list of length 2 or 3, namely [query, value] or "
                f"[query, value, key]. Received length: {len(inputs)}."
            )
        if mask is not None:
            if not isinstance(mask, (list, tuple)) or not 2 <= len(mask) <= 3:
                raise ValueError(
                    f"{what} mask must be a list of length 2 or 3, namely "
                    f"[query_mask, value_mask]. Received: mask={mask}."
                )

    def build(self, input_shape):
        self._check(input_shape)
        if self.use_scale:
            self.add_weight("scale", (), "ones")
        if self.score_mode == "concat":
            self.add_weight("concat_score_weight", (), "ones")

    def _scores(self, w, query, key):
        if self.score_mode == "dot":
            scores = jnp.matmul(query, jnp.swapaxes(key, -2, -1))
            if self.use_scale:
                scores = scores * w["scale"]
            return scores
        summed = query[..., :, None, :] + key[..., None, :, :]
        if self.use_scale:
            summed = w["scale"] * summed
        return w["concat_score_weight"] * jnp.sum(jnp.tanh(summed), axis=-1)

    def call(self, w, inputs, mask=None, training=False, rng=None,
             return_attention_scores=False, use_causal_mask=False):
        self._check(inputs, mask)
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) > 2 else value
        q_mask = mask[0] if mask else None
        v_mask = mask[1] if mask else None
        scores = self._scores(w, query, key)
        scores_mask = None
        if v_mask is not None:
            scores_mask = jnp.asarray(v_mask).astype(bool)[..., None, :]  # (B, 1, Tv)
        if use_causal_mask:
            causal = _causal_mask(scores.shape[-2], scores.shape[-1])
            scores_mask = causal if scores_mask is None else scores_mask & causal
        if scores_mask is not None:
            big = 65504.0 if scores.dtype == jnp.float16 else 1.0e9
            scores = jnp.where(scores_mask, scores, scores - big)
        weights = jax.nn.softmax(scores, axis=-1)
        if training and self.dropout > 0 and rng is not None:
            weights = _dropout(weights, self.dropout, rng)
        out = jnp.matmul(weights, value)
        if q_mask is not None:
            out = jnp.where(jnp.asarray(q_mask).astype(bool)[..., None], out,
                            jnp.zeros((), out.dtype))
        if return_attention_scores:
            return out, weights
        return out

    def compute_mask(self, inputs, mask=None):
        if not mask or mask[0] is None:
            return None
        return mask[0]


class AdditiveAttention(Attention):
    """Additive (Bahdanau) attention: scores `sum(scale * tanh(query + key), axis=-1)`,
    with a learned per-feature `scale` when `use_scale`."""

    def __init__(self, use_scale=True, dropout=0.0, **kwargs):
        super().__init__(use_scale=use_scale, dropout=dropout, **kwargs)

    def build(self, input_shape):
        self._check(input_shape)
        if self.use_scale:
            dim = input_shape[0][-1]
            if dim is None:
                raise ValueError(f"AdditiveAttention {self.name!r}: the query's last "
                                 f"dimension must be known, got {input_shape[0]}")
            self.add_weight("scale", (dim,), "glorot_uniform")

    def _scores(self, w, query, key):
        t = jnp.tanh(query[..., :, None, :] + key[..., None, :, :])
        if self.use_scale:
            t = w["scale"] * t
        return jnp.sum(t, axis=-1)
