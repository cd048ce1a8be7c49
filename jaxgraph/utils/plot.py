"""`plot_model` / `model_to_dot`: draw a graph with Graphviz.

One box per layer instance, so a shared layer appears once with one incoming edge
per call. With `expand_nested=True` a nested model becomes a cluster holding its
own layers (drawn once, however often the model is called); the caller's tensors
enter at the nested model's Input boxes and leave from the layers that produce
its outputs. Shapes are the graph's symbolic shapes.
"""

from __future__ import annotations

import html
import os

import jax

from ..graph.functional import Functional

_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".jpg": "jpg", ".jpeg": "jpeg",
            ".gif": "gif", ".ps": "ps", ".dot": "dot", ".gv": "dot"}

_DOT_MISSING = (
    "plot_model needs the Graphviz `dot` program to render {fmt!r} files, and it was not "
    "found on PATH. Install Graphviz (e.g. `apt-get install graphviz`, `brew install "
    "graphviz` or `conda install graphviz`), or write the source with a '.dot' file name."
)


def _graphviz():
    try:
        import graphviz
    except ImportError as e:
        raise ImportError(
            "plot_model needs the `graphviz` Python package (`pip install graphviz`) and "
            "the Graphviz `dot` program (e.g. `apt-get install graphviz`)."
        ) from e
    return graphviz


# ---------------------------------------------------------------------------- labels


def _shape_text(tensors) -> str:
    shapes = [str(tuple(t.shape)) for t in tensors]
    if not shapes:
        return "?"
    return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"


def _dtype_text(tensors) -> str:
    dtypes = [t.dtype for t in tensors]
    if not dtypes:
        return "?"
    return dtypes[0] if len(set(dtypes)) == 1 else "[" + ", ".join(dtypes) + "]"


def _distinct(texts) -> str:
    out: list[str] = []
    for text in texts:
        if text not in out:
            out.append(text)
    return " | ".join(out) if out else "?"


def _activation_name(layer) -> str | None:
    fn = getattr(layer, "activation", None)
    if fn is None or not callable(fn):
        return None
    from .. import activations

    try:
        name = activations.serialize(fn)
    except ValueError:
        name = getattr(fn, "__name__", type(fn).__name__)
    return name if isinstance(name, str) else type(fn).__name__


def _label(layer, nodes, opts) -> str:
    """An HTML-like Graphviz label: name (type), then optional rows of details."""
    esc = html.escape
    title = f"{layer.name} ({type(layer).__name__})" if opts["show_layer_names"] else type(
        layer).__name__
    rows = [f'<tr><td colspan="2"><b>{esc(title)}</b></td></tr>']
    if opts["show_layer_activations"]:
        act = _activation_name(layer)
        if act is not None:
            rows.append(f'<tr><td colspan="2">Activation: {esc(act)}</td></tr>')
    if opts["show_trainable"]:
        from .summary import _trainable_flag

        flag = _trainable_flag(layer)
        rows.append(f'<tr><td colspan="2">Trainable: {flag}</td></tr>')
    if opts["show_shapes"] or opts["show_dtype"]:
        is_input = layer.is_input_layer
        outs = [n.output_tensors for n in nodes]
        ins = [n.input_tensors for n in nodes]
        if opts["show_shapes"]:
            out_s = _distinct(_shape_text(t) for t in outs)
            in_s = out_s if is_input else _distinct(_shape_text(t) for t in ins)
            rows.append(f"<tr><td>Input shape: {esc(in_s)}</td>"
                        f"<td>Output shape: {esc(out_s)}</td></tr>")
        if opts["show_dtype"]:
            out_d = _distinct(_dtype_text(t) for t in outs)
            in_d = out_d if is_input else _distinct(_dtype_text(t) for t in ins)
            rows.append(f"<tr><td>Input dtype: {esc(in_d)}</td>"
                        f"<td>Output dtype: {esc(out_d)}</td></tr>")
    return ('<<table border="0" cellborder="1" cellspacing="0" cellpadding="4">'
            + "".join(rows) + "</table>>")


# ---------------------------------------------------------------------------- drawing


class _Drawer:
    """Walks a model (and, when expanding, its nested models) adding boxes and edges."""

    def __init__(self, graphviz, opts):
        self.gv = graphviz
        self.opts = opts
        self.ids: dict[int, str] = {}  # id(layer) -> dot node id
        self.used_ids: set[str] = set()
        self.drawn_models: set[int] = set()
        self.edges: list[tuple[str, str]] = []
        self.connected: set[int] = set()  # models whose inner edges are already added

    def _new_id(self, layer) -> str:
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in layer.name) or "layer"
        candidate, i = base, 1
        while candidate in self.used_ids:
            candidate, i = f"{base}_{i}", i + 1
        self.used_ids.add(candidate)
        return candidate

    def _expands(self, layer) -> bool:
        return self.opts["expand_nested"] and isinstance(layer, Functional)

    def _graph_layers(self, model):
        """Input layers first (Sequential hides them from `.layers`), then the rest."""
        out, seen = [], set()
        for layer in [t.node.layer for t in model.inputs] + list(model.layers):
            if id(layer) not in seen:
                seen.add(id(layer))
                out.append(layer)
        return out

    def source(self, tensor) -> str:
        """The dot id of the box whose output is `tensor` (looking inside expanded models)."""
        layer = tensor.node.layer
        while self._expands(layer):
            inner = jax.tree_util.tree_leaves(layer._output_struct.pack(layer.outputs))
            tensor = inner[tensor.index]
            layer = tensor.node.layer
        return self.ids[id(layer)]

    def targets(self, node) -> list[tuple[object, str]]:
        """(incoming tensor, dot id of the box receiving it) for one call."""
        layer = node.layer
        if not self._expands(layer):
            return [(t, self.ids[id(layer)]) for t in node.input_tensors]
        args, _ = node.call_args(lambda t: t)
        given = layer._input_struct.unpack(args[0], layer.input_names, "inputs")
        return [(t, self.ids[id(inner.node.layer)]) for t, inner in zip(given, layer.inputs)]

    def declare(self, model, graph) -> None:
        """Add a box (or a cluster) for every layer of `model` into `graph`."""
        for layer in self._graph_layers(model):
            if id(layer) in self.ids:
                continue
            if self._expands(layer):
                if id(layer) in self.drawn_models:
                    continue
                self.drawn_models.add(id(layer))
                self.ids[id(layer)] = self._new_id(layer)
                cluster = self.gv.Digraph(name=f"cluster_{self.ids[id(layer)]}")
                cluster.attr(label=f"{layer.name} ({type(layer).__name__})", style="dashed",
                             fontname="Helvetica")
                self.declare(layer, cluster)
                graph.subgraph(cluster)
                continue
            node_id = self.ids[id(layer)] = self._new_id(layer)
            nodes = ([layer._nodes[0]] if layer.is_input_layer
                     else [n for n in model._nodes_in_order if n.layer is layer])
            graph.node(node_id, label=_label(layer, nodes, self.opts))

    def connect(self, model) -> None:
        """An edge per tensor per call, recursing into expanded models once each."""
        for node in model._nodes_in_order:
            for tensor, target in self.targets(node):
                self.edges.append((self.source(tensor), target))
            if self._expands(node.layer) and id(node.layer) not in self.connected:
                self.connected.add(id(node.layer))
                self.connect(node.layer)

    def draw(self, model, graph) -> None:
        self.connected.add(id(model))
        self.declare(model, graph)
        self.connect(model)
        for src, dst in self.edges:
            graph.edge(src, dst)


def model_to_dot(model, show_shapes=False, show_dtype=False, show_layer_names=True,
                 rankdir="TB", expand_nested=False, dpi=200, subgraph=False,
                 show_layer_activations=False, show_trainable=False):
    """The model as a `graphviz.Digraph` (no file written, no `dot` program needed)."""
    if not isinstance(model, Functional):
        raise TypeError(f"model_to_dot expects a Model, got {type(model).__name__}")
    model._require_graph()
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ValueError(f"rankdir must be 'TB', 'LR', 'BT' or 'RL', got {rankdir!r}")
    gv = _graphviz()
    name = f"cluster_{model.name}" if subgraph else model.name
    graph = gv.Digraph(name=name)
    graph.attr(rankdir=rankdir, concentrate="false", dpi=str(dpi))
    graph.attr("node", shape="plaintext", fontname="Helvetica")
    if subgraph:
        graph.attr(label=model.name, style="dashed")
    opts = {"show_shapes": show_shapes, "show_dtype": show_dtype,
            "show_layer_names": show_layer_names, "expand_nested": expand_nested,
            "show_layer_activations": show_layer_activations,
            "show_trainable": show_trainable}
    _Drawer(gv, opts).draw(model, graph)
    return graph


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False,
               show_layer_names=True, rankdir="TB", expand_nested=False, dpi=200,
               show_layer_activations=False, show_trainable=False):
    """Draw `model` to `to_file` (format from its suffix) and return the `graphviz.Digraph`."""
    graph = model_to_dot(model, show_shapes=show_shapes, show_dtype=show_dtype,
                         show_layer_names=show_layer_names, rankdir=rankdir,
                         expand_nested=expand_nested, dpi=dpi,
                         show_layer_activations=show_layer_activations,
                         show_trainable=show_trainable)
    if to_file is None:
        return graph
    to_file = os.fspath(to_file)
    suffix = os.path.splitext(to_file)[1].lower()
    fmt = _FORMATS.get(suffix)
    if fmt is None:
        raise ValueError(
            f"plot_model cannot tell the format of {to_file!r} from its suffix; use one of "
            f"{sorted(_FORMATS)}"
        )
    directory = os.path.dirname(to_file)
    if directory:
        os.makedirs(directory, exist_ok=True)
    if fmt == "dot":
        with open(to_file, "w", encoding="utf-8") as f:
            f.write(graph.source)
        return graph
    gv = _graphviz()
    try:
        data = graph.pipe(format=fmt)
    except gv.ExecutableNotFound as e:
        raise RuntimeError(_DOT_MISSING.format(fmt=fmt)) from e
    with open(to_file, "wb") as f:
        f.write(data)
    return graph
