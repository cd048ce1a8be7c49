"""jaxgraph.vis on a small convnet trained on the 8x8 digits (DLwP 5.4's three techniques)."""

import numpy as np
import pytest

import jaxgraph
from jaxgraph import Input, Model, layers, optimizers, vis
from jaxgraph.datasets import digits


@pytest.fixture(scope="module")
def trained():
    (x, y), (xt, yt) = digits.load_data()
    x, xt = x[..., None] / 255.0, xt[..., None] / 255.0
    jaxgraph.utils.set_random_seed(0)
    inp = Input((8, 8, 1))
    h = layers.Conv2D(32, 3, activation="relu", padding="same", name="conv_a")(inp)
    h = layers.Conv2D(32, 3, activation="relu", padding="same", name="conv_b")(h)
    h = layers.Flatten(name="flat")(h)
    out = layers.Dense(10, activation="softmax", name="probs")(h)
    model = Model(inp, out)
    model.compile(optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["acc"])
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    acc = model.evaluate(xt, yt, verbose=0)[1]
    assert acc > 0.9
    return model, xt.astype(np.float32), yt


def test_activations_match_feature_extractor(trained):
    model, xt, _ = trained
    acts = vis.activations(model, xt[:3])
    assert list(acts) == ["conv_a", "conv_b", "flat", "probs"]
    assert acts["conv_a"].shape == (3, 8, 8, 32) and acts["flat"].shape == (3, 2048)
    extractor = Model(model.input, [model.get_layer("conv_b").output, model.output])
    conv_b, probs = extractor.predict(xt[:3], verbose=0)
    np.testing.assert_allclose(acts["conv_b"], conv_b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["probs"], probs, rtol=1e-5, atol=1e-6)
    single = vis.activations(model, xt[0], layer_names=["conv_a"])
    assert list(single) == ["conv_a"] and single["conv_a"].shape == (1, 8, 8, 32)
    with pytest.raises(ValueError, match="no_such_layer"):
        vis.activations(model, xt[:1], layer_names=["no_such_layer"])


def test_plot_activations_writes_channel_grids(trained, tmp_path):
    model, xt, _ = trained
    path = tmp_path / "acts.png"
    grids = vis.plot_activations(model, xt[:1], str(path), images_per_row=16)
    assert path.stat().st_size > 0
    assert set(grids) == {"conv_a", "conv_b"}  # only image-shaped outputs
    assert grids["conv_a"].shape == (2 * 8, 16 * 8) and grids["conv_a"].dtype == np.uint8


def test_filter_pattern_increases_the_filter_activation(trained, tmp_path):
    model, _, _ = trained
    img, before, after = vis.filter_pattern(model, "conv_b", 3, steps=30, step_size=0.5,
                                            return_activations=True)
    assert img.shape == (8, 8, 1) and img.min() >= 0 and img.max() <= 1
    assert after > before + 1.0
    # The pattern really drives that filter: it beats the starting image and another filter's.
    other = vis.filter_pattern(model, "conv_b", 7, steps=30, step_size=0.5)
    assert not np.allclose(img, other)
    grid = vis.plot_filters(model, "conv_a", str(tmp_path / "filters.png"),
                            filter_indices=[0, 1, 2], images_per_row=2, steps=5)
    assert grid.shape == (2 * 8 + 1, 2 * 8 + 1, 1)
    assert (tmp_path / "filters.png").exists()


def test_grad_cam_heat_sits_on_the_digit(trained):
    model, xt, _ = trained
    assert vis.last_conv_layer(model).name == "conv_b"
    heat = vis.grad_cam(model, xt)
    assert heat.shape == (len(xt), 8, 8) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() <= 1
    np.testing.assert_allclose(heat.max(axis=(1, 2))[heat.max(axis=(1, 2)) > 0], 1.0, 1e-5)
    ink = xt[..., 0] > 0
    inside = np.mean([h[m].mean() for h, m in zip(heat, ink)])
    outside = np.mean([h[~m].mean() for h, m in zip(heat, ink)])
    assert inside > 1.15 * outside
    one = vis.grad_cam(model, xt[0])
    np.testing.assert_allclose(one, heat[0], atol=1e-5)
    # An explicit class gives the map of that class, not of the prediction.
    predicted = int(model.predict(xt[:1], verbose=0).argmax())
    other = (predicted + 1) % 10
    assert not np.allclose(vis.grad_cam(model, xt[0], class_index=other), one)
    np.testing.assert_allclose(vis.grad_cam(model, xt[0], class_index=predicted), one,
                               atol=1e-5)
    early = vis.grad_cam(model, xt[:2], layer_name="conv_a")
    assert early.shape == (2, 8, 8)
    with pytest.raises(ValueError, match="Grad-CAM"):
        vis.grad_cam(model, xt[:1], layer_name="flat")


def test_plot_grad_cam_overlay(trained, tmp_path):
    model, xt, _ = trained
    path = tmp_path / "cam.png"
    over = vis.plot_grad_cam(model, xt[0], str(path), alpha=0.4)
    assert over.shape == (8, 8, 3) and over.min() >= 0 and over.max() <= 1
    assert path.stat().st_size > 0
    many = vis.plot_grad_cam(model, xt[:3], str(tmp_path / "cams.png"))
    assert many.shape == (3, 8, 8, 3)
    np.testing.assert_allclose(many[0], over, atol=1e-5)


def test_nested_base_is_searched(trained):
    """A conv base used as a layer (the fine-tuning setup): its inner conv is found."""
    jaxgraph.utils.set_random_seed(1)
    base_in = Input((8, 8, 1))
    base = Model(base_in, layers.Conv2D(4, 3, padding="same", activation="relu",
                                        name="inner_conv")(base_in), name="base")
    inp = Input((8, 8, 1))
    out = layers.Dense(3, activation="softmax")(layers.Flatten()(base(inp)))
    model = Model(inp, out)
    _, xt, _ = trained
    assert vis.last_conv_layer(model).name == "inner_conv"
    acts = vis.activations(model, xt[:2])
    assert acts["inner_conv"].shape == (2, 8, 8, 4)
    np.testing.assert_allclose(vis.activations(model, xt[:2], ["base"])["base"],
                               acts["inner_conv"])
    heat = vis.grad_cam(model, xt[:2])
    assert heat.shape == (2, 8, 8) and 0 <= heat.min() and heat.max() <= 1
