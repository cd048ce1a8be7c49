"""`model.summary()` and `plot_model`: what they print and draw comes from the graph."""

import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from jaxgraph import Input, Model, Sequential, layers
from jaxgraph.layers import Layer
from jaxgraph.utils.plot import model_to_dot, plot_model
from jaxgraph.utils.summary import print_summary, readable_size, summary_rows

ANSI = re.compile(r"\x1b\[")


class RunningMean(Layer):
    """A layer with a non-trainable statistic, like BatchNormalization's moving mean."""

    def build(self, input_shape):
        self.add_weight("scale", (input_shape[-1],), initializer="ones")
        self.add_weight("mean", (input_shape[-1],), initializer="zeros", trainable=False)

    def call(self, w, x):
        return (x - w["mean"]) * w["scale"]


def _siamese(prefix):
    a = Input(shape=(16,), name=f"{prefix}_a")
    b = Input(shape=(16,), name=f"{prefix}_b")
    shared = layers.Dense(8, activation="relu", name=f"{prefix}_shared")
    merged = layers.concatenate([shared(a), shared(b)], name=f"{prefix}_cat")
    stats = RunningMean(name=f"{prefix}_stats")(merged)
    inner = Sequential([layers.Dense(4, name=f"{prefix}_in1"),
                        layers.Dense(2, name=f"{prefix}_in2")], name=f"{prefix}_inner")
    return Model([a, b], inner(stats), name=f"{prefix}_model")


def _lines(model, **kwargs):
    out = []
    model.summary(print_fn=out.append, **kwargs)
    return out


def _row(lines, name):
    """The first table line that starts a row for `name`."""
    hits = [line for line in lines if re.search(rf"[│|]\s*(└ )?{re.escape(name)}\b", line)]
    assert hits, f"no row for {name!r} in\n" + "\n".join(lines)
    return hits[0]


# ---------------------------------------------------------------------------- summary


def test_summary_functional_table():
    model = _siamese("sm")
    lines = _lines(model)
    assert lines[0] == 'Model: "sm_model"'
    assert all(isinstance(line, str) and "\n" not in line and not ANSI.search(line)
               for line in lines)
    header = next(line for line in lines if "Layer (type)" in line)
    for column in ("Output Shape", "Param #", "Connected to"):
        assert column in header
    text = "\n".join(lines)
    # The shared layer has one row, listing both calls' inputs.
    assert len([line for line in lines if "sm_shared (Dense)" in line]) == 1
    shared_row = _row(lines, "sm_shared")
    assert "sm_a[0][0]" in shared_row and "sm_b[0][0]" in shared_row
    assert "(None, 8)" in shared_row and "136" in shared_row
    assert "sm_shared[0][0]" in text and "sm_shared[1][0]" in text
    assert "(None, 2)" in _row(lines, "sm_inner") and "sm_inner (Sequential)" in text
    assert "sm_in1" not in text  # not expanded
    total = 16 * 8 + 8 + 2 * 16 + 16 * 4 + 4 + 4 * 2 + 2
    assert f" Total params: {total:,} ({readable_size(total * 4)})" in lines
    assert f" Trainable params: {total - 16:,} ({readable_size((total - 16) * 4)})" in lines
    assert " Non-trainable params: 16 (64.00 B)" in lines


def test_summary_sequential_has_no_connected_column():
    model = Sequential([layers.Dense(32, activation="relu", input_shape=(64,)),
                        layers.Dense(10)], name="seq_summary")
    lines = _lines(model)
    assert not any("Connected to" in line for line in lines)
    assert not any("InputLayer" in line for line in lines)
    assert " Total params: 2,410 (9.41 KB)" in lines


def test_summary_expand_nested_and_show_trainable():
    model = _siamese("ex")
    model.get_layer("ex_inner").trainable = False
    lines = _lines(model, expand_nested=True, show_trainable=True)
    assert any("Trainable" in line for line in lines if "Layer (type)" in line)
    inner_row = _row(lines, "ex_in1")
    assert "└ ex_in1 (Dense)" in inner_row and "(None, 4)" in inner_row
    assert re.search(r"│\s+N\s+│", inner_row)
    assert re.search(r"│\s+Y\s+│", _row(lines, "ex_shared"))
    assert re.search(r"│\s+-\s+│", _row(lines, "ex_cat"))
    frozen = 16 * 4 + 4 + 4 * 2 + 2
    assert f" Non-trainable params: {frozen + 16:,} ({readable_size((frozen + 16) * 4)})" in lines


def test_summary_shapes_come_from_the_graph():
    tokens = Input(shape=(None,), dtype="int32", name="tok")
    emb = layers.Embedding(100, 8, name="emb_var")(tokens)
    pair = layers.Lambda(lambda t: [t, t[:, :, :3]], name="split")(emb)
    model = Model(tokens, layers.concatenate(pair, name="rejoin"))
    rows = {row["name"]: row for row in summary_rows(model)}
    assert rows["emb_var"]["shape"] == "(None, None, 8)"
    assert rows["split"]["shape"] == "[(None, None, 8), (None, None, 3)]"
    assert rows["rejoin"]["connected"] == "split[0][0], split[0][1]"
    lines = _lines(model, line_length=160)
    assert "[(None, None, 8), (None, None, 3)]" in _row(lines, "split")
    assert "split[0][0], split[0][1]" in _row(lines, "rejoin")


def test_summary_line_length_and_positions():
    model = _siamese("ll")
    for length in (70, 130):
        table = [line for line in _lines(model, line_length=length)[1:]
                 if line[:1] in "┏┃┡│├└"]
        assert table and max(len(line) for line in table) <= length + 1
    narrow = _lines(model, line_length=100, positions=[30, 60, 75, 100])
    assert narrow[1].index("┳") == 30
    with pytest.raises(ValueError, match="positions"):
        model.summary(print_fn=print, positions=[0.5, 1.0])


def test_summary_prints_to_stdout_without_print_fn(capsys):
    model = _siamese("out")
    assert model.summary() is None
    printed = capsys.readouterr().out
    assert 'Model: "out_model"' in printed and "out_shared (Dense)" in printed
    assert "Total params:" in printed


def test_summary_of_unbuilt_sequential_raises():
    with pytest.raises(ValueError, match="no input shape yet"):
        Sequential([layers.Dense(3)]).summary()
    with pytest.raises(TypeError):
        print_summary(layers.Dense(3))


def test_summary_totals_match_keras():
    keras = pytest.importorskip("keras")

    def build(lib):
        a = lib.Input(shape=(16,))
        b = lib.Input(shape=(16,))
        shared = lib.layers.Dense(8)
        merged = lib.layers.concatenate([shared(a), shared(b)])
        if hasattr(lib.layers, "BatchNormalization"):  # moving stats are non-trainable
            merged = lib.layers.BatchNormalization()(merged)
        inner = lib.Sequential([lib.layers.Dense(4), lib.layers.Dense(2)])
        return lib.Model([a, b], inner(merged))

    import jaxgraph

    ours, theirs = build(jaxgraph), build(keras)
    assert len(ours.layers) == len(theirs.layers)
    theirs.layers[-1].trainable = False
    ours.layers[-1].trainable = False
    keras_text = []
    theirs.summary(print_fn=lambda text, line_break=False: keras_text.append(text))
    keras_totals = [line for line in "\n".join(keras_text).splitlines() if "params:" in line]
    our_totals = [line for line in _lines(ours) if "params:" in line]
    assert our_totals == keras_totals


# ---------------------------------------------------------------------------- plot


def _edges(source):
    return re.findall(r"^\s*(\S+) -> (\S+)", source, flags=re.M)


def test_model_to_dot_nodes_and_edges():
    model = _siamese("pd")
    graph = model_to_dot(model, show_shapes=True)
    source = graph.source
    for layer in model.layers:
        assert layer.name in source
    edges = _edges(source)
    assert ("pd_a", "pd_shared") in edges and ("pd_b", "pd_shared") in edges
    assert edges.count(("pd_shared", "pd_cat")) == 2  # one edge per call
    assert ("pd_cat", "pd_stats") in edges and ("pd_stats", "pd_inner") in edges
    # One box per layer, even when shared.
    assert len(re.findall(r"^\s*pd_shared \[", source, flags=re.M)) == 1
    assert "Output shape: (None, 16)" in source and "(None, 8)" in source
    assert "pd_in1" not in source


def test_model_to_dot_expand_nested_draws_clusters():
    base_in = Input(shape=(6,), name="cam_in")
    base = Model(base_in, layers.Dense(3, name="cam_feat")(base_in), name="camera_base")
    left, right = Input(shape=(6,), name="left_cam"), Input(shape=(6,), name="right_cam")
    merged = layers.concatenate([base(left), base(right)], name="both_cams")
    model = Model([left, right], layers.Dense(1, name="decision")(merged))
    source = model_to_dot(model, expand_nested=True).source
    assert "subgraph cluster_camera_base" in source
    assert len(re.findall(r"^\s*cam_feat \[", source, flags=re.M)) == 1
    edges = _edges(source)
    assert ("left_cam", "cam_in") in edges and ("right_cam", "cam_in") in edges
    assert ("cam_in", "cam_feat") in edges
    assert edges.count(("cam_feat", "both_cams")) == 2
    assert ("both_cams", "decision") in edges
    collapsed = _edges(model_to_dot(model).source)
    assert ("left_cam", "camera_base") in collapsed and ("right_cam", "camera_base") in collapsed


def test_model_to_dot_deeply_nested_expansion():
    inner = Sequential([layers.Dense(4, name="deep_d1")], name="deep_inner")
    mid_in = Input(shape=(5,), name="mid_in")
    middle = Model(mid_in, inner(mid_in), name="deep_middle")
    x = Input(shape=(5,), name="deep_x")
    model = Model(x, layers.Dense(1, name="deep_out")(middle(x)))
    source = model_to_dot(model, expand_nested=True).source
    assert "cluster_deep_middle" in source and "cluster_deep_inner" in source
    edges = _edges(source)
    assert ("deep_x", "mid_in") in edges and ("deep_d1", "deep_out") in edges


def test_model_to_dot_options():
    model = _siamese("opt")
    source = model_to_dot(model, show_layer_names=False, rankdir="LR",
                          show_layer_activations=True, show_dtype=True,
                          show_trainable=True).source
    assert "rankdir=LR" in source and "Activation: relu" in source
    assert "<b>Dense</b>" in source and "Output dtype: float32" in source
    assert "Trainable: Y" in source
    with pytest.raises(ValueError, match="rankdir"):
        model_to_dot(model, rankdir="UP")


@pytest.mark.skipif(shutil.which("dot") is None,
                    reason="Graphviz's `dot` is not installed (.ci/run installs it)")
def test_plot_model_writes_png_and_svg(tmp_path):
    model = _siamese("pm")
    png = tmp_path / "model.png"
    graph = plot_model(model, to_file=str(png), show_shapes=True, dpi=60)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "pm_shared" in graph.source
    svg = tmp_path / "sub" / "model.svg"
    plot_model(model, to_file=svg, expand_nested=True)
    root = ET.fromstring(svg.read_bytes())
    assert root.tag.endswith("svg")
    texts = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    assert "pm_in1 (Dense)" in texts and "pm_shared (Dense)" in texts
    pdf = tmp_path / "model.pdf"
    plot_model(model, to_file=pdf)
    assert pdf.read_bytes()[:4] == b"%PDF"


def test_plot_model_dot_suffix_and_bad_suffix(tmp_path):
    model = _siamese("sf")
    path = tmp_path / "model.dot"
    plot_model(model, to_file=path)
    assert path.read_text().startswith("digraph")
    with pytest.raises(ValueError, match="suffix"):
        plot_model(model, to_file=tmp_path / "model.bmpx")


def test_plot_model_without_dot_binary_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="Graphviz `dot`"):
        plot_model(_siamese("nd"), to_file=tmp_path / "model.png")
    assert not (tmp_path / "model.png").exists()


def test_plot_model_graph_matches_model_calls():
    x = Input(shape=(4,), name="rx")
    h = layers.Dense(4, name="rh")(x)
    y = layers.add([h, x], name="radd")
    model = Model(x, y)
    edges = _edges(model_to_dot(model).source)
    assert sorted(edges) == sorted([("rx", "rh"), ("rh", "radd"), ("rx", "radd")])
    assert np.asarray(model(np.ones((1, 4)))).shape == (1, 4)
