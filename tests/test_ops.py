"""`jaxgraph.ops` against `keras.ops` (JAX backend): values, dtypes, signatures, symbolic
shapes; and ops nodes in functional models (save/load, build-time errors), plus
gradients through ops inside a Keras-style layer."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg
from jaxgraph import ops

keras = pytest.importorskip("keras")
kops = keras.ops

_rng = np.random.default_rng(0)
F = _rng.normal(size=(3, 4)).astype("float32")
P = (np.abs(F) + 0.5).astype("float32")  # positive, for log / sqrt / power
G = _rng.normal(size=(3, 4)).astype("float32")
H = F.astype("float16")
I = _rng.integers(-5, 6, size=(3, 4)).astype("int32")  # noqa: E741
U = np.abs(I).astype("uint8")
B8 = I.astype("int8")
BOOL = F > 0
IDX = np.array([[0, 2], [1, 3], [3, 0]], dtype="int32")
S = _rng.normal(size=(2, 3, 4)).astype("float32")
SQ = _rng.normal(size=(4, 4)).astype("float32")

# (op, args, kwargs): each is run by both libraries on the same inputs.
CASES = [
    ("arange", (5,), {}), ("arange", (1, 7, 2), {}), ("arange", (0.0, 3.0, 0.5), {}),
    ("arange", (4,), {"dtype": "float32"}),
    ("shape", (F,), {}), ("ndim", (S,), {}),
    ("reshape", (F, (2, 6)), {}), ("reshape", (S, (-1, 4)), {}),
    ("tile", (F, (2, 1)), {}), ("tile", (I, 2), {}),
    ("cast", (F, "int32"), {}), ("cast", (I, "float16"), {}), ("cast", (BOOL, "float32"), {}),
    ("expand_dims", (F, -1), {}), ("expand_dims", (F, 0), {}),
    ("concatenate", ([F, G],), {"axis": -1}), ("concatenate", ([I, I],), {}),
    ("matmul", (F, G.T), {}), ("matmul", (S, SQ), {}), ("matmul", (I, I.T), {}),
    ("transpose", (S,), {}), ("transpose", (S, (0, 2, 1)), {}),
    ("mean", (F,), {}), ("mean", (S, 1), {"keepdims": True}), ("mean", (I,), {"axis": 0}),
    ("mean", (H, -1), {}), ("mean", (BOOL,), {}),
    ("sum", (F, (0, 1)), {}), ("sum", (I,), {"axis": 1}), ("sum", (BOOL,), {}),
    ("sum", (B8,), {}), ("sum", (U, 0), {}),
    ("max", (F,), {"axis": 1}), ("max", (I, 0, True), {}), ("min", (F,), {}),
    ("sqrt", (P,), {}), ("sqrt", (np.abs(I),), {}),
    ("square", (F,), {}), ("square", (I,), {}), ("square", (BOOL,), {}),
    ("exp", (F,), {}), ("exp", (I,), {}), ("exp", (H,), {}), ("exp", (B8,), {}),
    ("log", (P,), {}), ("log", (np.abs(I) + 1,), {}),
    ("softmax", (F,), {}), ("softmax", (S,), {"axis": 1}), ("softmax", (S,), {"axis": (1, 2)}),
    ("log_softmax", (F,), {}), ("log_softmax", (S, 0), {}),
    ("relu", (F,), {}), ("relu", (I,), {}), ("relu6", (F * 5,), {}),
    ("sigmoid", (F,), {}), ("sigmoid", (H,), {}), ("tanh", (F,), {}), ("tanh", (I,), {}),
    ("where", (BOOL, F, G), {}), ("where", (BOOL, I, 0.5), {}), ("where", (BOOL, 1, 0), {}),
    ("equal", (I, 0), {}), ("not_equal", (F, G), {}), ("greater", (F, G), {}),
    ("greater_equal", (I, 1), {}), ("less", (F, 0.0), {}), ("less_equal", (I, 2), {}),
    ("logical_and", (BOOL, F > 0.5), {}), ("logical_or", (BOOL, I > 0), {}),
    ("logical_not", (BOOL,), {}),
    ("ones", ((2, 3),), {}), ("ones", ((2,),), {"dtype": "int32"}), ("zeros", ((3,),), {}),
    ("full", ((2, 2), 7), {}), ("full", ((2,), 1.5), {"dtype": "float16"}),
    ("ones_like", (I,), {}), ("ones_like", (F,), {"dtype": "int32"}), ("zeros_like", (H,), {}),
    ("full_like", (I, 3), {}), ("eye", (3,), {}), ("eye", (3, 4, 1), {}),
    ("stack", ([F, G],), {}), ("stack", ([I, I],), {"axis": -1}),
    ("split", (F, 2), {"axis": 1}), ("split", (S, [1, 3], -1), {}),
    ("squeeze", (F[:, :1],), {}), ("squeeze", (S[:1], 0), {}),
    ("clip", (F, -0.5, 0.5), {}), ("clip", (I, -1, 2), {}), ("clip", (BOOL, 0, 1), {}),
    ("abs", (F,), {}), ("abs", (I,), {}), ("absolute", (B8,), {}),
    ("maximum", (F, G), {}), ("maximum", (I, 0), {}), ("maximum", (I, 0.5), {}),
    ("minimum", (I, U), {}), ("minimum", (H, F), {}),
    ("argmax", (F,), {}), ("argmax", (F, 1), {}), ("argmax", (I, 0, True), {}),
    ("argmin", (F, -1), {}),
    ("one_hot", (IDX, 4), {}), ("one_hot", (IDX[0], 3), {"axis": 0, "dtype": "int32"}),
    ("take", (F, IDX), {"axis": 1}), ("take", (F, IDX), {}), ("take", (I, [0, 2], 0), {}),
    ("take_along_axis", (F, IDX, 1), {}),
    ("convert_to_tensor", (F,), {}), ("convert_to_tensor", ([1, 2, 3],), {}),
    ("convert_to_tensor", ([1.0, 2.0],), {}), ("convert_to_tensor", (I, "float32"), {}),
    ("convert_to_numpy", (F,), {}),
    ("stop_gradient", (F,), {}),
    ("erf", (F,), {}), ("gelu", (F,), {}), ("gelu", (F,), {"approximate": False}),
    ("norm", (F,), {}), ("norm", (F,), {"axis": -1, "keepdims": True}), ("norm", (I,), {}),
    ("norm", (F, "fro"), {}), ("norm", (F, 1, 1), {}),
    ("triu", (SQ,), {}), ("triu", (S, 1), {}), ("tril", (SQ, -1), {}), ("tril", (I,), {}),
    ("einsum", ("ij,kj->ik", F, G), {}), ("einsum", ("bij,jk->bik", S, SQ), {}),
    ("pad", (F, ((1, 0), (0, 2))), {}), ("pad", (I, ((1, 1), (1, 1))), {"constant_values": 9}),
    ("pad", (F, ((2, 2), (0, 0)), "reflect"), {}),
    ("flip", (F,), {}), ("flip", (S, 1), {}),
    ("cumsum", (F,), {}), ("cumsum", (I, 1), {}), ("cumsum", (BOOL, 0), {}),
    ("cumprod", (F, 0), {}),
    ("top_k", (F, 2), {}), ("top_k", (I, 3), {}),
    ("logsumexp", (F,), {}), ("logsumexp", (S, 1, True), {}),
    ("moments", (S, (0, 1)), {}), ("moments", (S, -1), {"keepdims": True}),
    ("moments", (S.astype("float16"), [0]), {}),
    ("average", (F,), {}), ("average", (F, 1), {"weights": P[0]}), ("average", (I, 0), {}),
    ("slice", (S, (0, 1, 1), (2, 2, 2)), {}), ("slice_update", (F, (1, 1), G[:2, :2]), {}),
    ("dot", (F, G.T), {}), ("dot", (F[0], G[0]), {}), ("dot", (I, I.T), {}),
    ("add", (F, G), {}), ("add", (I, 1), {}), ("add", (I, 1.0), {}), ("add", (B8, U), {}),
    ("add", (H, 2.0), {}), ("add", (I, H), {}),
    ("subtract", (F, G), {}), ("subtract", (I, B8), {}),
    ("multiply", (F, 2), {}), ("multiply", (I, I), {}), ("multiply", (BOOL, F), {}),
    ("divide", (F, P), {}), ("divide", (I, 2), {}), ("divide", (I, U + 1), {}),
    ("true_divide", (I, 3), {}), ("floor_divide", (I, 3), {}), ("mod", (I, 3), {}),
    ("power", (P, G), {}), ("power", (I, 2), {}), ("power", (P, 0.5), {}),
    ("negative", (F,), {}), ("negative", (I,), {}),
    ("sign", (F,), {}), ("rsqrt", (P,), {}), ("reciprocal", (P,), {}),
    ("expm1", (F,), {}), ("log1p", (P,), {}), ("sin", (F,), {}), ("cos", (I,), {}),
    ("floor", (F * 3,), {}), ("ceil", (F * 3,), {}), ("round", (F * 3,), {}),
    ("round", (F * 30, 1), {}), ("isnan", (F,), {}),
    ("isfinite", (np.array([1.0, np.inf, -np.inf, np.nan], "float32"),), {}),
    ("var", (F,), {}), ("var", (I, 0), {}), ("std", (F, 1), {}),
    ("prod", (F, 0), {}), ("any", (BOOL, 1), {}), ("all", (BOOL,), {}),
    ("repeat", (F, 2), {"axis": 0}), ("broadcast_to", (F[0], (3, 4)), {}),
    ("swapaxes", (S, 0, 2), {}), ("moveaxis", (S, 0, -1), {}), ("ravel", (S,), {}),
    ("sort", (F,), {}), ("argsort", (F, 0), {}), ("outer", (F[0], G[1]), {}),
    ("softplus", (F,), {}), ("silu", (F,), {}), ("elu", (F,), {}),
    ("leaky_relu", (F,), {}), ("leaky_relu", (F, 0.1), {}),
]


def _flat(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _dtype(x):
    return x.dtype.name if hasattr(x, "dtype") else type(x).__name__


@pytest.mark.parametrize("op,args,kwargs", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_matches_keras_values_and_dtypes(op, args, kwargs):
    expected = getattr(kops, op)(*args, **kwargs)
    got = getattr(ops, op)(*args, **kwargs)
    assert isinstance(got, (list, tuple)) == isinstance(expected, (list, tuple))
    assert len(_flat(got)) == len(_flat(expected))
    for g, e in zip(_flat(got), _flat(expected)):
        assert _dtype(g) == _dtype(e), (op, _dtype(g), _dtype(e))
        np.testing.assert_allclose(np.asarray(g, dtype="float64"),
                                   np.asarray(e, dtype="float64"), rtol=1e-5, atol=1e-6)


def test_every_op_is_tested_and_has_keras_signature():
    tested = {c[0] for c in CASES}
    assert set(ops.__all__) == tested
    for name in ops.__all__:
        ours = inspect.signature(getattr(ops, name)).parameters
        theirs = inspect.signature(getattr(kops, name)).parameters
        assert [(p.name, p.default, p.kind) for p in ours.values()] == [
            (p.name, p.default, p.kind) for p in theirs.values()], name


# Symbolic inputs: t[0] (None, 6) float, t[1] (None, 3, 4) float, t[2] (4, 2) float,
# t[3] (None, 5) int32, t[4] (None, 6) bool.
SYMBOLIC = {
    "expand_dims": lambda o, t: o.expand_dims(t[0], -1),
    "reshape": lambda o, t: o.reshape(t[1], (-1, 2, 2)),
    "concatenate": lambda o, t: o.concatenate([t[0], t[0]], axis=-1),
    "matmul": lambda o, t: o.matmul(t[1], t[2]),
    "mean": lambda o, t: o.mean(t[1], axis=1),
    "transpose": lambda o, t: o.transpose(t[1], (0, 2, 1)),
    "split": lambda o, t: o.split(t[1], 2, axis=-1),
    "top_k": lambda o, t: o.top_k(t[0], 2),
    "one_hot": lambda o, t: o.one_hot(t[3], 5),
    "einsum": lambda o, t: o.einsum("bij,jk->bik", t[1], t[2]),
    "pad": lambda o, t: o.pad(t[0], ((0, 0), (1, 2))),
    "moments": lambda o, t: o.moments(t[1], (0, 1)),
    "take": lambda o, t: o.take(t[1], np.array([0, 3], "int32"), axis=-1),
    "where": lambda o, t: o.where(t[4], t[0], 0.0),
    "sum_int": lambda o, t: o.sum(t[3], axis=-1),
    "divide_int": lambda o, t: o.divide(t[3], 2),
    "argmax": lambda o, t: o.argmax(t[1], axis=-1),
}


@pytest.mark.parametrize("case", sorted(SYMBOLIC))
def test_symbolic_shapes_match_keras(case):
    specs = [((None, 6), "float32"), ((None, 3, 4), "float32"), ((4, 2), "float32"),
             ((None, 5), "int32"), ((None, 6), "bool")]
    theirs = _flat(SYMBOLIC[case](kops, [keras.KerasTensor(s, dtype=d) for s, d in specs]))
    ours = _flat(SYMBOLIC[case](ops, [jg.Input(batch_shape=s, dtype=d) for s, d in specs]))
    assert [tuple(t.shape) for t in ours] == [tuple(t.shape) for t in theirs]
    assert [t.dtype for t in ours] == [keras.backend.standardize_dtype(t.dtype) for t in theirs]


def test_shape_of_symbolic_tensor_has_none_batch():
    x = jg.Input(shape=(None, 8))
    assert ops.shape(x) == (None, None, 8)
    assert ops.shape(x) == tuple(kops.shape(keras.Input(shape=(None, 8))))
    with pytest.raises(TypeError, match="symbolic"):
        ops.convert_to_numpy(x)


def _ops_model():
    inputs = jg.Input(shape=(5,), name="x")
    ids = jg.Input(shape=(5,), dtype="int32", name="ids")
    x = ops.expand_dims(inputs, -1)
    x = ops.concatenate([x, ops.square(x), ops.one_hot(ids, 3)], axis=-1)
    x = jg.layers.Dense(4)(x)
    x = ops.where(ops.greater(x, 0.0), ops.gelu(x), ops.exp(x) - 1.0)
    top, _ = ops.top_k(x, 2)
    first, rest = ops.split(x, [1], axis=-1)
    x = ops.concatenate([top, first, ops.sum(rest, axis=-1, keepdims=True)], axis=-1)
    x = ops.reshape(x, (-1, 5 * 4))
    x = ops.cast(ops.softmax(ops.multiply(x, np.arange(20, dtype="float32"))), np.float32)
    return jg.Model([inputs, ids], [x, ops.argmax(x, axis=-1)])


def test_functional_model_with_ops_saves_loads_and_predicts(tmp_path):
    model = _ops_model()
    assert model.outputs[0].shape == (None, 20)
    assert model.outputs[1].dtype == "int32"
    x = _rng.normal(size=(6, 5)).astype("float32")
    ids = _rng.integers(0, 3, size=(6, 5)).astype("int32")
    before = model.predict([x, ids], verbose=0)
    path = tmp_path / "ops.keras"
    model.save(path)
    loaded = jg.models.load_model(path)
    after = loaded.predict([x, ids], verbose=0)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert [type(layer).__name__ for layer in loaded.layers] == [
        type(layer).__name__ for layer in model.layers]
    assert any(layer.name.startswith("where") for layer in loaded.layers)
    from_json = jg.models.model_from_json(model.to_json())
    from_json.set_weights(model.get_weights())
    np.testing.assert_array_equal(from_json.predict([x, ids], verbose=0)[0], before[0])


def test_op_layer_resolves_names_only_from_jaxgraph_ops():
    from jaxgraph.layers.ops import OpLayer

    with pytest.raises(ValueError, match="Unknown op"):
        OpLayer("os.system", ["echo"])
    with pytest.raises(ValueError, match="Unknown op"):
        OpLayer("__import__", ["os"])


def test_build_time_error_names_op_and_shapes():
    a = jg.Input(shape=(3, 4))
    b = jg.Input(shape=(5, 6))
    with pytest.raises(ValueError, match=r"ops\.matmul.*\(None, 3, 4\), \(None, 5, 6\)"):
        ops.matmul(a, b)
    with pytest.raises(ValueError, match=r"ops\.reshape.*\(None, 3, 4\)"):
        ops.reshape(a, (-1, 5))


def test_jit_grad_through_ops_in_custom_layer():
    class Gate(jg.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

        def call(self, inputs):
            batch, steps = ops.shape(inputs)[0], ops.shape(inputs)[1]
            causal = ops.cast(ops.arange(steps)[:, None] >= ops.arange(steps), "float32")
            mixed = ops.matmul(ops.tile(causal[None], (batch, 1, 1)), inputs)
            scores = ops.sum(ops.tanh(mixed) * self.w, axis=-1)
            return ops.mean(ops.log_softmax(scores, axis=-1), axis=-1)

    inputs = jg.Input(shape=(4, 3))
    model = jg.Model(inputs, Gate()(inputs))
    variables = model.init(jax.random.key(0))
    x = jnp.asarray(_rng.normal(size=(2, 4, 3)).astype("float32"))

    def loss(v):
        return jnp.sum(model.apply(v, x)[0])

    grads = jax.jit(jax.grad(loss))(variables)
    leaves = jax.tree_util.tree_leaves(grads)
    assert leaves and all(np.all(np.isfinite(g)) for g in leaves)
    assert any(np.any(np.asarray(g) != 0) for g in leaves)
    # vmap over examples agrees with the batched call
    per_example = jax.vmap(lambda e: model.apply(variables, e[None])[0][0])(x)
    np.testing.assert_allclose(per_example, model.apply(variables, x)[0], rtol=1e-6)


@pytest.mark.parametrize("name", ["sum", "prod", "max", "min", "std"])
def test_reductions_take_a_list_as_keras_does(name):
    values = [1.5, -2.0, 3.0]
    ours, theirs = getattr(ops, name)(values), getattr(kops, name)(values)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-6)
    assert np.asarray(ours).dtype == np.asarray(theirs).dtype
