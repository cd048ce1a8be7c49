"""TensorBoard callback: event files read back with TensorBoard's own reader."""

import os

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from jaxgraph import Input, Model, layers
from jaxgraph.callbacks import CallbackList, TensorBoard
from jaxgraph.callbacks.base import Logs


def read(path):
    ea = EventAccumulator(path, size_guidance={"scalars": 0, "histograms": 0, "images": 0,
                                               "tensors": 0})
    ea.Reload()
    return ea


def scalars(ea, tag):
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def text_model():
    tok = Input((5,), dtype="int32", name="tok")
    x = layers.Embedding(20, 4, name="emb")(tok)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(6, activation="relu", name="hidden")(x)
    out = layers.Dense(1, activation="sigmoid", name="out")(x)
    return Model(tok, out, name="text")


def run_hooks(model, cb, epochs, steps=3, validation_data=None, logs_of=None):
    """Drive the callback as the trainer does (batch hooks only when wanted)."""
    model.stop_training = False
    cbl = CallbackList([cb], model=model, params={"epochs": epochs, "steps": steps,
                                                  "verbose": 0})
    cb.validation_data = validation_data
    batches = cb.wants_batches()
    cbl.call("on_train_begin", Logs())
    for epoch in range(epochs):
        cbl.call("on_epoch_begin", epoch, Logs())
        for b in range(steps):
            if batches:
                cbl.call("on_train_batch_begin", b, Logs())
                cbl.call("on_train_batch_end", b, Logs({"loss": np.float32(b + 10 * epoch)}))
        cbl.call("on_epoch_end", epoch, Logs(logs_of(epoch)))
    cbl.call("on_train_end", Logs())


def test_scalars_histograms_images_embeddings_graph(tmp_path):
    model = text_model()
    meta = tmp_path / "words.tsv"
    meta.write_text("".join(f"word{i}\n" for i in range(20)))
    x_val = np.random.default_rng(0).integers(0, 20, (40, 5)).astype("int32")
    y_val = np.zeros((40, 1), "float32")
    log_dir = str(tmp_path / "logs")
    cb = TensorBoard(log_dir, histogram_freq=1, write_images=True, embeddings_freq=2,
                     embeddings_metadata={"emb": str(meta)}, write_steps_per_second=True)
    assert not cb.wants_batches()
    run_hooks(model, cb, 3, validation_data=(x_val, y_val), logs_of=lambda e: {
        "loss": 1.0 / (e + 1), "acc": 0.5 + 0.1 * e, "learning_rate": 0.01,
        "val_loss": 2.0 / (e + 1), "val_acc": 0.25})

    assert sorted(os.listdir(log_dir)) == ["train", "validation"]
    train = read(os.path.join(log_dir, "train"))
    val = read(os.path.join(log_dir, "validation"))
    assert scalars(train, "epoch_loss") == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    assert [v for _, v in scalars(train, "epoch_acc")] == pytest.approx([0.5, 0.6, 0.7])
    assert [v for _, v in scalars(train, "epoch_learning_rate")] == pytest.approx([0.01] * 3)
    assert all(v > 0 for _, v in scalars(train, "epoch_steps_per_second"))
    assert scalars(val, "epoch_loss") == [(0, 2.0), (1, 1.0), (2, pytest.approx(2 / 3))]
    assert "epoch_val_loss" not in train.Tags()["scalars"]
    assert not any(t.startswith("batch_") for t in train.Tags()["scalars"])

    # one weight histogram per weight and epoch, tagged layer/weight
    hist = train.Tags()["histograms"]
    assert {"emb/embeddings", "hidden/kernel", "hidden/bias", "out/kernel", "out/bias"} <= set(
        hist)
    assert [e.step for e in train.Histograms("hidden/kernel")] == [0, 1, 2]
    kernel = np.asarray(model.get_layer("hidden").get_weights()[0])
    assert train.Histograms("hidden/kernel")[0].histogram_value.num == kernel.size
    # layer outputs on a validation sample
    act = val.Tags()["histograms"]
    assert {"emb/activations", "flat/activations", "hidden/activations",
            "out/activations"} <= set(act)
    assert val.Histograms("hidden/activations")[0].histogram_value.num == 32 * 6
    # weights as images
    assert "hidden/kernel/image" in train.Tags()["images"]

    # the layer graph: a GraphDef with one node per layer call
    graph = train.Graph()
    nodes = {n.name: n for n in graph.node}
    assert set(nodes) == {"tok", "emb", "flat", "hidden", "out"}
    assert nodes["tok"].op == "Placeholder" and nodes["hidden"].op == "Dense"
    assert list(nodes["hidden"].input) == ["flat"]
    shape = nodes["hidden"].attr["_output_shapes"].list.shape[0]
    assert [d.size for d in shape.dim] == [-1, 6]
    assert "keras/text_summary" in train.Tags()["tensors"]

    # the projector: config plus tensors and labels for epochs 0 and 2
    config = open(os.path.join(log_dir, "train", "projector_config.pbtxt")).read()
    assert config.count("tensor_name") == 2 and "emb" in config
    for step in ("00000", "00002"):
        folder = os.path.join(log_dir, "train", step, "emb")
        tensors = np.loadtxt(os.path.join(folder, "tensors.tsv"), delimiter="\t")
        assert tensors.shape == (20, 4)
        labels = open(os.path.join(folder, "metadata.tsv")).read().split()
        assert labels[:2] == ["word0", "word1"] and len(labels) == 20
    assert not os.path.exists(os.path.join(log_dir, "train", "00001"))


def test_batch_scalars_every_update_freq(tmp_path):
    model = text_model()
    cb = TensorBoard(str(tmp_path), update_freq=2, write_graph=False)
    assert cb.wants_batches()
    run_hooks(model, cb, 2, steps=3, logs_of=lambda e: {"loss": 1.0})
    train = read(str(tmp_path / "train"))
    # global batches 2, 4 and 6 (epoch 0 batch 1, epoch 1 batches 0 and 2)
    assert scalars(train, "batch_loss") == [(2, 1.0), (4, 10.0), (6, 12.0)]
    assert train.Tags()["graph"] is False  # write_graph=False
    assert TensorBoard(str(tmp_path), update_freq="batch").update_freq == 1
    with pytest.raises(ValueError, match="update_freq"):
        TensorBoard(str(tmp_path), update_freq=0)


def test_nested_models_become_name_scopes(tmp_path):
    inner_in = Input((3,), name="inner_in")
    inner = Model(inner_in, layers.Dense(2, name="proj")(inner_in), name="encoder")
    a = Input((3,), name="a")
    b = Input((3,), name="b")
    merged = layers.concatenate([inner(a), inner(b)], name="cat")
    model = Model([a, b], layers.Dense(1, name="head")(merged), name="siamese")
    cb = TensorBoard(str(tmp_path), histogram_freq=1)
    data = [np.ones((4, 3), "float32"), np.zeros((4, 3), "float32")]
    run_hooks(model, cb, 1, validation_data=(data, np.zeros((4, 1))),
              logs_of=lambda e: {"loss": 1.0})
    train = read(str(tmp_path / "train"))
    nodes = {n.name: n for n in train.Graph().node}
    assert {"a", "b", "encoder/proj", "encoder_1/proj", "cat", "head"} <= set(nodes)
    assert list(nodes["encoder/proj"].input) == ["a"]
    assert list(nodes["encoder_1/proj"].input) == ["b"]
    assert list(nodes["cat"].input) == ["encoder/proj", "encoder_1/proj"]
    val = read(str(tmp_path / "validation"))
    assert {"encoder/activations", "encoder_1/activations", "cat/activations"} <= set(
        val.Tags()["histograms"])


def test_profile_batch_writes_a_jax_trace(tmp_path):
    model = text_model()
    cb = TensorBoard(str(tmp_path), profile_batch=2, write_graph=False)
    assert cb.wants_batches()
    jax.numpy.ones(3).block_until_ready()
    run_hooks(model, cb, 1, steps=3, logs_of=lambda e: {"loss": 1.0})
    assert not cb.wants_batches()  # done: later fits keep the fast loop
    profile = tmp_path / "train" / "plugins" / "profile"
    runs = os.listdir(profile)
    assert runs and any(f.endswith(".xplane.pb") for f in os.listdir(profile / runs[0]))
    with pytest.raises(ValueError, match="profile_batch"):
        TensorBoard(profile_batch=(5, 2))


def test_tensorboard_with_real_fit(tmp_path):
    model = text_model()
    model.compile("rmsprop", "binary_crossentropy", metrics=["acc"])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20, (64, 5)).astype("int32")
    y = (x[:, :1] > 10).astype("float32")
    cb = TensorBoard(str(tmp_path), histogram_freq=1, embeddings_freq=1)
    history = model.fit(x, y, epochs=2, batch_size=32, validation_split=0.25, verbose=0,
                        callbacks=[cb])
    train = read(str(tmp_path / "train"))
    val = read(str(tmp_path / "validation"))
    assert [v for _, v in scalars(train, "epoch_loss")] == pytest.approx(
        history.history["loss"])
    assert [v for _, v in scalars(val, "epoch_acc")] == pytest.approx(
        history.history["val_acc"])
    assert "epoch_learning_rate" in train.Tags()["scalars"]
    # histograms show the trained weights of each epoch, not the initial ones
    last = train.Histograms("out/kernel")[-1].histogram_value
    kernel = model.get_layer("out").get_weights()[0]
    assert last.sum == pytest.approx(float(kernel.sum()), rel=1e-4)
    assert os.path.exists(tmp_path / "train" / "projector_config.pbtxt")
