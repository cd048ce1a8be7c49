"""compile / fit / evaluate / predict: numbers, structure, recompiles and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxgraph
from jaxgraph import Input, Model, Sequential, callbacks, layers
from jaxgraph.utils import set_random_seed


def mlp(n_in=8, n_out=3, name=None):
    x = Input(shape=(n_in,), name="features")
    h = layers.Dense(16, activation="relu", name="hidden")(x)
    y = layers.Dense(n_out, activation="softmax", name="probs")(h)
    return Model(x, y, name=name)


def blobs(n=200, n_in=8, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_out, n_in)) * 3
    y = rng.integers(0, n_out, n)
    x = centers[y] + rng.normal(size=(n, n_in))
    x = (x - x.mean(0)) / x.std(0)
    return x.astype("float32"), y.astype("int32")


def multi_io():
    a = Input(shape=(6,), name="a")
    b = Input(shape=(4,), name="b")
    h = layers.concatenate([layers.Dense(8, activation="relu")(a), b])
    reg = layers.Dense(1, name="reg")(h)
    cls = layers.Dense(3, activation="softmax", name="cls")(h)
    return Model([a, b], [reg, cls])


def test_fit_learns_and_history_keys():
    set_random_seed(0)
    x, y = blobs()
    model = mlp()
    model.compile(optimizer=jaxgraph.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["acc"])
    hist = model.fit(x, y, epochs=15, batch_size=32, validation_split=0.2, verbose=0)
    assert set(hist.history) == {"loss", "acc", "val_loss", "val_acc"}  # as Keras
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert hist.history["acc"][-1] > 0.9
    loss, acc = model.evaluate(x, y, verbose=0)
    assert acc > 0.9
    probs = model.predict(x[:7], verbose=0)
    assert probs.shape == (7, 3)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)


def test_trained_weights_reach_the_model_and_match_a_reference_loop():
    """fit == a hand-written optax loop over the same batches (no shuffle)."""
    set_random_seed(1)
    x, y = blobs(96)
    model = mlp()
    v0 = model.variables
    model.compile(optimizer=jaxgraph.optimizers.SGD(learning_rate=0.1),
                  loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)

    def loss_fn(params, xb, yb):
        out, _ = model.apply({"params": params, "state": {}}, xb)
        return -jnp.mean(jnp.log(jnp.clip(out[jnp.arange(len(yb)), yb], 1e-7, 1.0)))

    params = v0["params"]
    tx = optax.sgd(0.1)
    opt = tx.init(params)
    for _ in range(2):
        for i in range(0, 96, 32):
            g = jax.grad(loss_fn)(params, x[i:i + 32], y[i:i + 32])
            upd, opt = tx.update(g, opt, params)
            params = optax.apply_updates(params, upd)
    got = model.variables["params"]
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), got, params)


def test_multi_output_total_is_weighted_sum_of_output_losses():
    set_random_seed(2)
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(64, 6)).astype("f4"), rng.normal(size=(64, 4)).astype("f4")
    yr, yc = rng.normal(size=(64, 1)).astype("f4"), rng.integers(0, 3, 64)
    model = multi_io()
    model.compile(optimizer="rmsprop",
                  loss={"reg": "mse", "cls": "sparse_categorical_crossentropy"},
                  loss_weights={"reg": 0.25, "cls": 10.0}, metrics={"cls": ["acc"]})
    out = model.evaluate({"a": xa, "b": xb}, {"reg": yr, "cls": yc}, return_dict=True, verbose=0)
    assert set(out) == {"loss", "reg_loss", "cls_loss", "cls_acc"}
    np.testing.assert_allclose(out["loss"], 0.25 * out["reg_loss"] + 10 * out["cls_loss"],
                               rtol=1e-5)
    # The same objective given as lists trains from a list of inputs.
    model.compile(optimizer="rmsprop", loss=["mse", "sparse_categorical_crossentropy"],
                  loss_weights=[0.25, 10.0])
    hist = model.fit([xa, xb], [yr, yc], epochs=3, batch_size=16, verbose=0)
    assert {"loss", "reg_loss", "cls_loss"} <= set(hist.history)
    # Per-output losses are computed independently and combined in the total.
    reg_only = float(np.mean((model.predict([xa, xb], verbose=0)[0] - yr) ** 2))
    res = model.evaluate([xa, xb], [yr, yc], return_dict=True, verbose=0)
    np.testing.assert_allclose(res["reg_loss"], reg_only, rtol=1e-4)


def test_compile_errors_list_output_names():
    model = multi_io()
    with pytest.raises(ValueError, match=r"\['reg', 'cls'\]"):
        model.compile(loss={"regression": "mse"})
    with pytest.raises(ValueError, match="2 output"):
        model.compile(loss=["mse"])
    with pytest.warns(UserWarning, match=r"no entry for output\(s\) \['cls'\]"):
        model.compile(loss={"reg": "mse"})
    assert model.compiled_loss.loss_fns[1] is None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.compile(loss={"reg": "mse", "cls": None})  # None says so explicitly


def test_one_compile_per_fit_with_validation_lr_changes_and_partial_batch():
    """The trace counter: train step once, eval step once, whatever happens between."""
    set_random_seed(3)
    x, y = blobs(203)  # 203 = 6 * 32 + 11: a partial last batch

    class Halve(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.optimizer.learning_rate = self.model.optimizer.learning_rate / 2

    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["acc"])
    hist = model.fit(x, y, epochs=4, batch_size=32, validation_data=(x[:50], y[:50]),
                     callbacks=[Halve(), callbacks.ReduceLROnPlateau(patience=1)], verbose=0)
    counts = model._trainer.trace_counts
    assert counts["train_step"] == 1, counts
    assert counts["eval_step"] == 1, counts
    np.testing.assert_allclose(hist.history["learning_rate"],
                               [1e-3 / 2 ** (i + 1) for i in range(4)], rtol=1e-6)


def test_partial_batch_is_masked_not_dropped():
    """Padding rows must not change the result: 5 samples, batch 4 == per-sample sums."""
    set_random_seed(4)
    x, y = blobs(5)
    model = mlp()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    full = model.evaluate(x, y, batch_size=5, verbose=0)
    padded = model.evaluate(x, y, batch_size=4, verbose=0)
    np.testing.assert_allclose(full, padded, rtol=1e-6)


def test_sample_and_class_weights():
    set_random_seed(5)
    x, y = blobs(40)
    model = mlp()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    base = model.evaluate(x, y, verbose=0)
    zeros = np.zeros(40, "f4")
    zeros[:20] = 2.0
    weighted = model.evaluate(x, y, sample_weight=zeros, verbose=0)
    ref = 2 * model.evaluate(x[:20], y[:20], verbose=0) * 20 / 40
    np.testing.assert_allclose(weighted, ref, rtol=1e-5)
    assert not np.isclose(base, weighted)
    # class_weight multiplies each sample's loss by its class's weight.
    hist = model.fit(x, y, epochs=1, batch_size=40, class_weight={0: 1.0, 1: 0.0, 2: 0.0},
                     shuffle=False, verbose=0)
    probs = model.predict(x, verbose=0)
    ce = -np.log(np.clip(probs[np.arange(40), y], 1e-7, 1))
    assert np.isfinite(hist.history["loss"][0])
    assert ce.shape == (40,)


def test_class_weight_on_several_outputs_needs_output_names_and_class_labels():
    x = np.random.default_rng(0).standard_normal((12, 4)).astype("f4")
    inp = Input((4,))
    age = layers.Dense(1, name="age")(inp)
    cls = layers.Dense(3, activation="softmax", name="cls")(inp)
    model = Model(inp, [age, cls])
    model.compile("sgd", ["mse", "sparse_categorical_crossentropy"])
    y = [x[:, :1] * 10, np.arange(12) % 3]
    with pytest.raises(ValueError, match="single output.*'age', 'cls'"):
        model.fit(x, y, class_weight={0: 1.0, 1: 2.0}, verbose=0)
    # Keyed by output name it applies to that output only: the class-2 rows count 0 there.
    age_pred, probs = model.predict(x, verbose=0)
    ce = -np.log(np.clip(probs[np.arange(12), y[1]], 1e-7, 1))
    logs = model.train_on_batch(x, y, class_weight={"cls": {0: 1.0, 1: 1.0, 2: 0.0}},
                                return_dict=True)
    np.testing.assert_allclose(logs["cls_loss"], ce[y[1] != 2].sum() / 12, rtol=1e-5)
    np.testing.assert_allclose(logs["age_loss"], np.mean((y[0] - age_pred) ** 2), rtol=1e-5)
    with pytest.raises(ValueError, match="output 'age' needs class labels"):
        model.fit(x, y, class_weight={"age": {0: 1.0}}, verbose=0)


def test_frozen_layers_are_bit_identical_and_have_no_optimizer_state():
    set_random_seed(6)
    x, y = blobs(64)
    model = mlp()
    hidden = model.get_layer("hidden")
    hidden.trainable = False
    before = [w.copy() for w in hidden.get_weights()]
    head_before = model.get_layer("probs").get_weights()[0].copy()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(before, hidden.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(head_before, model.get_layer("probs").get_weights()[0])
    opt_leaves = jax.tree_util.tree_leaves(model._trainer.ts["opt"])
    sizes = {int(np.prod(np.shape(leaf))) for leaf in opt_leaves}
    assert 8 * 16 not in sizes  # the frozen kernel has no moments


def test_generator_input_and_callback_sees_live_weights():
    set_random_seed(7)
    x, y = blobs(96)

    def batches():
        for i in range(0, 96, 32):
            yield x[i:i + 32], y[i:i + 32]

    seen = []

    class Peek(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(self.model.get_layer("hidden").get_weights()[0].copy())

    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(batches(), epochs=1, steps_per_epoch=3, callbacks=[Peek()], verbose=0)
    np.testing.assert_array_equal(seen[-1], model.get_layer("hidden").get_weights()[0])


def test_callback_weight_edits_are_not_lost():
    set_random_seed(8)
    x, y = blobs(64)

    class Zero(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            w = self.model.get_layer("probs").get_weights()
            self.model.get_layer("probs").set_weights([np.zeros_like(a) for a in w])

    model = mlp()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=64, callbacks=[Zero()], verbose=0)
    assert all(np.all(a == 0) for a in model.get_layer("probs").get_weights())
    # and training continues from the edited values
    assert np.all(model._trainer.steps.variables_of(model._trainer.ts)["params"]["probs"][
        "kernel"] == 0)


def test_batchnorm_state_updates_during_fit():
    set_random_seed(9)
    if not hasattr(layers, "BatchNormalization"):
        pytest.skip("BatchNormalization not available")
    x, y = blobs(64)
    model = Sequential([Input(shape=(8,)), layers.Dense(8), layers.BatchNormalization(),
                        layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = model.variables["state"]
    model.fit(x + 5.0, y, epochs=2, batch_size=16, verbose=0)
    after = model.variables["state"]
    moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), before, after)
    assert max(jax.tree_util.tree_leaves(moved)) > 0.01


def test_make_train_step_is_pure_and_jitted():
    set_random_seed(10)
    x, y = blobs(32)
    model = mlp()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["acc"])
    step = model.make_train_step()
    variables = model.init(jax.random.key(0))
    opt_state = step.init(variables)
    losses = []
    for i in range(20):
        variables, opt_state, logs = step(variables, opt_state, (x, y), jax.random.key(i))
        losses.append(float(logs["loss"]))
    assert losses[-1] < losses[0]
    assert set(logs) == {"loss", "acc"}


def test_bad_input_is_caught_before_compiling():
    model = multi_io()
    model.compile(optimizer="sgd", loss=["mse", "sparse_categorical_crossentropy"])
    xa, xb = np.zeros((10, 6), "f4"), np.zeros((10, 4), "f4")
    yr, yc = np.zeros((10, 1), "f4"), np.zeros((10,), "i4")
    with pytest.raises(ValueError, match="expects 2 inputs"):
        model.fit(xa, [yr, yc], verbose=0)
    with pytest.raises(ValueError, match="unknown"):
        model.fit({"a": xa, "bee": xb}, [yr, yc], verbose=0)
    with pytest.raises(ValueError, match="cardinality"):
        model.fit([xa, xb[:9]], [yr, yc], verbose=0)
    with pytest.raises(ValueError, match="shape"):
        model.fit([xa, np.zeros((10, 5), "f4")], [yr, yc], verbose=0)
    assert model._trainer.trace_counts["train_step"] == 0

    text = Input(shape=(None,), dtype="int32", name="text")
    emb = layers.Embedding(20, 4)(text)
    out = layers.Dense(1)(layers.Flatten()(emb[:, :3]))
    m2 = Model(text, out)
    m2.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="non-integer"):
        m2.fit(np.full((4, 5), 0.5, "f4"), np.zeros((4, 1)), verbose=0)


def test_y_shape_checked_against_loss():
    model = mlp()
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, y = blobs(10)
    with pytest.raises(ValueError, match="probs"):
        model.fit(x, y, verbose=0)  # int labels with categorical CE
    assert model._trainer.trace_counts["train_step"] == 0


def test_fit_twice_continues_and_evaluate_before_fit():
    set_random_seed(11)
    x, y = blobs(64)
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=3, verbose=0)
    mid = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=3, verbose=0)
    assert model.optimizer.iterations == 12
    assert model.evaluate(x, y, verbose=0) < mid < first


def test_loss_weights_change_without_recompile():
    set_random_seed(12)
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(32, 6)).astype("f4"), rng.normal(size=(32, 4)).astype("f4")
    yr, yc = rng.normal(size=(32, 1)).astype("f4"), rng.integers(0, 3, 32)
    model = multi_io()
    model.compile(optimizer="sgd", loss=["mse", "sparse_categorical_crossentropy"])
    model.fit([xa, xb], [yr, yc], epochs=1, verbose=0)
    model.loss_weights = [0.0, 1.0]
    hist = model.fit([xa, xb], [yr, yc], epochs=1, verbose=0)
    np.testing.assert_allclose(hist.history["loss"][0], hist.history["cls_loss"][0], rtol=1e-5)
    assert model._trainer.trace_counts["train_step"] == 1


def test_shuffle_drawn_ahead_matches_epoch_by_epoch_fits():
    # fit draws epoch e+1's row order while epoch e runs; the order must still be the one
    # of (seed, epoch): one 3-epoch fit equals three 1-epoch fits resumed by initial_epoch.
    x, y = blobs(96)
    weights = []
    for split in (False, True):
        set_random_seed(21)
        model = mlp()
        model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
        model._trainer.data_seed = 1234
        if split:
            for epoch in range(3):
                model.fit(x, y, batch_size=32, epochs=epoch + 1, initial_epoch=epoch,
                          shuffle=True, verbose=0)
        else:
            model.fit(x, y, batch_size=32, epochs=3, shuffle=True, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("spe", ["auto", 3])
def test_host_gathered_chunks_train_like_device_gathered_batches(spe, monkeypatch):
    # On CPU each chunk's rows are gathered with NumPy and sliced in the program; on an
    # accelerator the program gathers them by index. Same batches, same training: here
    # with shuffling, a partial last batch, sample weights, a validation set and (spe=3)
    # a last chunk with inactive steps.
    from jaxgraph.training import data as data_mod
    from jaxgraph.training.trainer import Trainer

    x, y = blobs(100)
    sw = np.linspace(0.5, 1.5, 100).astype("float32")
    used, results = [], []
    for path in ("host", "device"):
        chosen = Trainer.stage_train if path == "host" else Trainer.stage
        monkeypatch.setattr(Trainer, "stage_train", lambda self, *a, f=chosen: (
            used.append(type(staged := f(self, *a)).__name__), staged)[1])
        set_random_seed(5)
        model = mlp()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], steps_per_execution=spe)
        hist = model.fit(x, y, sample_weight=sw, batch_size=16, epochs=3, shuffle=True,
                         validation_data=(x[:20], y[:20]), verbose=0)
        results.append((hist.history, model.get_weights(), model._trainer.trace_counts))
    (h_host, w_host, t_host), (h_dev, w_dev, _) = results
    for key in h_dev:
        np.testing.assert_allclose(h_host[key], h_dev[key], rtol=1e-5, err_msg=key)
    for a, b in zip(w_host, w_dev):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert t_host["train_step"] == 1
    if jax.default_backend() == "cpu":
        assert used == [data_mod.HostStaged.__name__, data_mod.Staged.__name__]


def test_host_gathered_chunks_stay_small():
    from jaxgraph.training.trainer import HOST_CHUNK_BYTES, _divisor_near

    assert _divisor_near(128, 28) == 16   # a divisor: no inactive steps
    assert _divisor_near(100, 30) == 25
    assert _divisor_near(7, 5) == 5       # 7 is prime: a masked tail beats 1 step/dispatch
    assert _divisor_near(4, 100) == 4
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    step_bytes = 128 * (64 + 10) * 4  # the book's MLP on digits, batch 128
    k = model._trainer.choose_k(128, False, False, step_bytes)
    if jax.default_backend() == "cpu":
        assert k == 16 and k * step_bytes <= HOST_CHUNK_BYTES
    assert model._trainer.choose_k(128, False, False) == 128


@pytest.mark.parametrize("n,batch", [(1000, 32), (17 * 8 - 3, 8), (5, 32)])
def test_predict_runs_several_batches_per_dispatch_and_matches_apply(n, batch):
    from jaxgraph.training.loop import PREDICT_BATCHES_PER_DISPATCH, _predict_program

    model = multi_io()
    rng = np.random.default_rng(3)
    xa, xb = rng.normal(size=(n, 6)).astype("f4"), rng.normal(size=(n, 4)).astype("f4")
    reg, cls = model.predict([xa, xb], batch_size=batch, verbose=0)
    want_reg, want_cls = model.apply(model.variables, [xa, xb])[0]
    assert reg.shape == (n, 1) and cls.shape == (n, 3)
    np.testing.assert_allclose(reg, want_reg, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cls, want_cls, rtol=1e-5, atol=1e-6)
    # One program for every call of this size: the batch start is an argument.
    model.predict([xa, xb], batch_size=batch, verbose=0)
    _, steps = _predict_program(model)
    assert steps.trace_counts["predict_step"] == 1
    assert PREDICT_BATCHES_PER_DISPATCH > 1


def test_multi_step_and_compiler_choices_follow_backend_and_layers():
    from jaxgraph.training.trainer import auto_steps_per_execution, step_compiler_options

    dense = mlp()
    tokens = Input(shape=(5,), dtype="int32")
    embedded = Model(tokens, layers.Dense(2)(layers.GlobalAveragePooling1D()(
        layers.Embedding(50, 4)(tokens))))
    image = Input(shape=(8, 8, 1))
    conv = Model(image, layers.Dense(2)(layers.Flatten()(layers.Conv2D(4, 3)(image))))
    if jax.default_backend() == "cpu":
        assert auto_steps_per_execution(dense, 40) == 40  # a whole epoch per dispatch
        assert auto_steps_per_execution(conv, 40) == 1  # XLA:CPU convs lose speed in loops
        assert step_compiler_options(dense) == {"xla_backend_optimization_level": 1}
        assert step_compiler_options(embedded) is None  # scatter-add gradients need -O3
    else:
        assert auto_steps_per_execution(conv, 40) == 40
        assert step_compiler_options(dense) is None


def _data_path(monkeypatch, path):
    """Stage fit's training data for the host-gathered ("host") or device-gathered
    ("device") path, whatever the backend."""
    from jaxgraph.training.trainer import Trainer

    chosen = Trainer.stage_train if path == "host" else Trainer.stage
    monkeypatch.setattr(Trainer, "stage_train", lambda self, *a, f=chosen: f(self, *a))


class _KeepParams(callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seen = dict(self.params)


def test_generator_that_runs_out_warns_as_keras():
    # Keras 3 (EpochIterator): a generator that stops before steps_per_epoch ends the
    # epoch with "Your input ran out of data"; params['steps'] stays steps_per_epoch.
    x, y = blobs(30)
    model = mlp()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    keep = _KeepParams()
    steps = []
    count = callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: steps.append(b))
    gen = ((x[i:i + 10], y[i:i + 10]) for i in range(0, 30, 10))
    with pytest.warns(UserWarning, match="ran out of data: the generator stopped after 3 of "
                                         "the epoch's 5 steps"):
        model.fit(gen, steps_per_epoch=5, epochs=1, verbose=0, callbacks=[keep, count])
    assert keep.seen["steps"] == 5
    assert steps == [0, 1, 2]


@pytest.mark.parametrize("path,spe", [("host", 1), ("host", "auto"), ("device", 2)])
def test_steps_per_epoch_goes_on_through_the_data_as_keras(path, spe, monkeypatch):
    # Keras 3 (EpochIterator): with steps_per_epoch below a pass, epoch 2 trains on the
    # batches after epoch 1's; the epoch that reaches the end of the data stops there
    # (here epoch 4: batch 9 alone, its 5-row partial batch) and the next epoch starts a
    # new pass at batch 0. Validation uses the first validation_steps batches each time.
    _data_path(monkeypatch, path)
    x, y = blobs(95)
    xv, yv = blobs(40, seed=1)
    set_random_seed(30)
    model = mlp()
    w0 = model.get_weights()
    model.compile(optimizer=jaxgraph.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                  steps_per_execution=spe)
    seen = {}
    record = callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: seen.setdefault(model._trainer.epoch, []).append(b))
    hist = model.fit(x, y, batch_size=10, steps_per_epoch=3, epochs=9, shuffle=False,
                     validation_data=(xv, yv), validation_steps=2, verbose=0,
                     callbacks=[record] if spe == 1 else [])
    assert model._trainer.trace_counts["train_step"] == 1
    assert model._trainer.trace_counts["eval_step"] == 1

    ref = mlp()
    ref.set_weights(w0)
    ref.compile(optimizer=jaxgraph.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    epochs = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]] * 2 + [[0, 1, 2]]
    losses, val_losses = [], []
    for batches in epochs:
        out = [ref.train_on_batch(x[b * 10:b * 10 + 10], y[b * 10:b * 10 + 10])
               for b in batches]
        losses.append(np.average(out, weights=[len(x[b * 10:b * 10 + 10]) for b in batches]))
        val_losses.append(ref.evaluate(xv[:20], yv[:20], batch_size=20, verbose=0))
    np.testing.assert_allclose(hist.history["loss"], losses, rtol=1e-5)
    np.testing.assert_allclose(hist.history["val_loss"], val_losses, rtol=1e-5)
    for a, b in zip(model.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    if spe == 1:  # batch indices restart each epoch; the short epoch has one batch
        assert seen == {e: list(range(len(b))) for e, b in enumerate(epochs)}
    # steps_per_epoch above one pass: each epoch is one pass, with Keras's warning, and
    # callbacks see Keras's params['steps'] (steps_per_epoch).
    keep = _KeepParams()
    with pytest.warns(UserWarning, match="ran out of data.*steps_per_epoch=15.*10 batches"):
        hist = model.fit(x, y, batch_size=10, steps_per_epoch=15, epochs=1, shuffle=False,
                         verbose=0, callbacks=[keep])
    assert keep.seen["steps"] == 15
    out = [ref.train_on_batch(x[i:i + 10], y[i:i + 10]) for i in range(0, 95, 10)]
    np.testing.assert_allclose(hist.history["loss"], [np.average(out, weights=[10] * 9 + [5])],
                               rtol=1e-5)
    # evaluate's steps: the first `steps` batches (batches of n / steps without batch_size).
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=10, steps=2, verbose=0),
                               model.evaluate(x[:20], y[:20], batch_size=20, verbose=0),
                               rtol=1e-5)
    np.testing.assert_allclose(model.evaluate(x, y, steps=2, verbose=0),
                               model.evaluate(x, y, batch_size=95, verbose=0), rtol=1e-5)


@pytest.mark.parametrize("path", ["host", "device"])
def test_shuffled_steps_per_epoch_sees_each_row_once_per_pass(path, monkeypatch):
    # Each row is a one-hot feature selecting its own weight, which SGD moves only in the
    # epoch that uses the row: so the weights that changed in an epoch are its rows.
    _data_path(monkeypatch, path)
    n = 95
    x, y = np.eye(n, dtype="float32"), np.ones((n, 1), "float32")

    def run():
        model = Sequential([Input(shape=(n,)),
                            layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
        model.compile(optimizer=jaxgraph.optimizers.SGD(0.5), loss="mse")
        model._trainer.data_seed = 77
        rows, before = [], [np.zeros(n)]

        def end(epoch, logs):
            w = model.get_weights()[0][:, 0]
            rows.append(set(np.flatnonzero(w != before[0]).tolist()))
            before[0] = w

        model.fit(x, y, batch_size=10, steps_per_epoch=4, epochs=6, shuffle=True, verbose=0,
                  callbacks=[callbacks.LambdaCallback(on_epoch_end=end)])
        assert model._trainer.trace_counts["train_step"] == 1
        return rows

    rows = run()
    # 10 batches a pass, 4 steps an epoch: epochs 0-2 make pass 1 (4 + 4 + 2 batches).
    assert [len(r) for r in rows] == [40, 40, 15, 40, 40, 15]
    for one_pass in (rows[:3], rows[3:]):
        assert set.union(*one_pass) == set(range(n))  # every row, each once
    assert rows[0] != rows[3]  # each pass has its own permutation ...
    assert rows == run()  # ... deterministic in the seed


def test_steps_per_epoch_resume_goes_on_with_the_data(tmp_path):
    # BackupAndRestore resumes mid-pass at the batch the interrupted run had reached (an
    # uninterrupted run's weights); a fresh fit from initial_epoch starts at batch 0 of a
    # new pass, as Keras does.
    x, y = blobs(95)

    def model_():
        set_random_seed(31)
        model = mlp()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model._trainer.data_seed = 5
        return model

    class Stop(Exception):
        pass

    def stop(epoch, logs):
        if epoch == 5:
            raise Stop

    kw = dict(batch_size=10, steps_per_epoch=4, epochs=8, shuffle=True, verbose=0)
    for shuffle in (True, False):
        kw["shuffle"] = shuffle
        clean = model_()
        clean.fit(x, y, **kw)
        model = model_()
        backup = str(tmp_path / f"b{shuffle}")
        with pytest.raises(Stop):
            model.fit(x, y, callbacks=[callbacks.BackupAndRestore(backup),
                                       callbacks.LambdaCallback(on_epoch_begin=stop)], **kw)
        model = model_()
        hist = model.fit(x, y, callbacks=[callbacks.BackupAndRestore(backup)], **kw)
        assert hist.epoch == [5, 6, 7]
        for a, b in zip(model.get_weights(), clean.get_weights()):
            np.testing.assert_array_equal(a, b)
    a, b = model_(), model_()
    first = a.fit(x, y, batch_size=10, steps_per_epoch=3, epochs=2, shuffle=False, verbose=0)
    later = b.fit(x, y, batch_size=10, steps_per_epoch=3, epochs=4, initial_epoch=2,
                  shuffle=False, verbose=0)
    np.testing.assert_allclose(later.history["loss"], first.history["loss"], rtol=1e-6)
