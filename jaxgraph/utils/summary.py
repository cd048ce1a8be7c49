"""`model.summary()`: the Keras table of layers, output shapes and parameter counts.

Everything printed comes from the graph itself: output shapes are the symbolic
tensors' shapes, "Connected to" lists each call of a layer inside this model as
`producer[node_index][tensor_index]` (the node index is the call's position in
the producer's calls, so it matches `layer.get_output_at(i)`), and the totals
count every weight once however many times its layer is called.
"""

from __future__ import annotations

import io

import numpy as np

from ..graph.functional import Functional
from ..graph.sequential import Sequential

_NO_WEIGHTS = "-"


# ---------------------------------------------------------------------------- rows


def _is_sequential(model) -> bool:
    return isinstance(model, Sequential)


def format_shape(shape) -> str:
    """`(None, 32)`, as Keras prints shapes (a 1-tuple keeps its comma)."""
    return str(tuple(shape))


def _nodes_in(model: Functional, layer) -> list:
    """The calls of `layer` that belong to `model`'s graph, in call order."""
    if layer.is_input_layer:
        return [layer._nodes[0]]
    return [node for node in model._nodes_in_order if node.layer is layer]


def _node_shapes(node) -> str:
    shapes = [format_shape(t.shape) for t in node.output_tensors]
    return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"


def _output_shape(model: Functional, layer) -> str:
    """The output shape of each call; a shared layer with differing shapes lists them all."""
    shapes: list[str] = []
    for node in _nodes_in(model, layer):
        text = _node_shapes(node)
        if text not in shapes:
            shapes.append(text)
    return ", ".join(shapes) if shapes else "?"


def _tensor_ref(tensor) -> str:
    producer = tensor.node.layer
    return f"{producer.name}[{producer._nodes.index(tensor.node)}][{tensor.index}]"


def _connected_to(model: Functional, layer) -> str:
    if layer.is_input_layer:
        return "-"
    refs = [_tensor_ref(t) for node in _nodes_in(model, layer) for t in node.input_tensors]
    return ", ".join(refs) if refs else "-"


def _param_count(layer) -> int:
    if isinstance(layer, Functional):
        return layer.count_params() if layer._input_struct is not None else 0
    return layer.count_params() if layer.built else 0


def _trainable_flag(layer) -> str:
    if isinstance(layer, Functional):
        has_weights = bool(layer._input_struct is not None and layer.weights)
    else:
        has_weights = bool(layer._weights)
    if not has_weights:
        return _NO_WEIGHTS
    return "Y" if layer.trainable else "N"


def summary_rows(model: Functional, expand_nested: bool = False) -> list[dict]:
    """One dict per printed row: name, type, shape, params, connected, trainable, depth."""
    rows: list[dict] = []

    def walk(m: Functional, depth: int, show_links: bool) -> None:
        for layer in m.layers + m._extra_layers():  # attribute layers call does not wire
            rows.append({
                "name": layer.name,
                "type": type(layer).__name__,
                "shape": _output_shape(m, layer),
                "params": _param_count(layer),
                "connected": _connected_to(m, layer) if show_links else "-",
                "trainable": _trainable_flag(layer),
                "depth": depth,
            })
            if expand_nested and isinstance(layer, Functional):
                walk(layer, depth + 1, show_links and not _is_sequential(layer))

    walk(model, 0, not _is_sequential(model))
    return rows


# ---------------------------------------------------------------------------- totals


def _unique_weights(weights) -> list:
    seen, out = set(), []
    for w in weights:
        if id(w) not in seen:
            seen.add(id(w))
            out.append(w)
    return out


def _count_and_bytes(weights) -> tuple[int, int]:
    count = sum(int(np.prod(w.shape)) for w in weights)
    size = sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in weights)
    return count, size


def readable_size(num_bytes: float) -> str:
    """`10.18 KB`: bytes in powers of 1024, two decimals, as Keras prints them."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if num_bytes < 1024 or unit == "TB":
            return f"{num_bytes:.2f} {unit}"
        num_bytes /= 1024
    raise AssertionError("unreachable")


def param_totals(model: Functional) -> dict[str, tuple[int, int]]:
    """(count, bytes) of all, trainable and non-trainable weights, each counted once."""
    all_w = _unique_weights(model.weights)
    trainable = _unique_weights(model.trainable_weights)
    trainable_ids = {id(w) for w in trainable}
    non_trainable = [w for w in all_w if id(w) not in trainable_ids]
    return {
        "total": _count_and_bytes(all_w),
        "trainable": _count_and_bytes(trainable),
        "non_trainable": _count_and_bytes(non_trainable),
    }


# ---------------------------------------------------------------------------- layout


def _column_widths(line_length: int, positions, n_cols: int) -> list[int]:
    """Column widths from Keras-style `positions` (fractions, or absolute right edges)."""
    if positions is None:
        defaults = {3: [0.45, 0.8, 1.0], 4: [0.3, 0.58, 0.7, 1.0],
                    5: [0.28, 0.52, 0.63, 0.9, 1.0], 2: [0.6, 1.0]}
        positions = defaults.get(n_cols) or [(i + 1) / n_cols for i in range(n_cols)]
    positions = list(positions)
    if len(positions) < n_cols:
        raise ValueError(
            f"summary(positions=...) needs {n_cols} column positions for this model, "
            f"got {len(positions)}: {positions}"
        )
    positions = positions[:n_cols]
    if all(p <= 1 for p in positions):
        positions = [int(line_length * p) for p in positions]
    if any(b <= a for a, b in zip([0] + positions, positions)):
        raise ValueError(f"summary(positions=...) must increase, got {positions}")
    edges = [0] + positions
    return [max(4, edges[i + 1] - edges[i]) for i in range(n_cols)]


def _build_table(model, rows, line_length, positions, show_trainable):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    headers = ["Layer (type)", "Output Shape", "Param #"]
    graph = not _is_sequential(model)
    if graph:
        headers.append("Connected to")
    if show_trainable:
        headers.append("Trainable")
    widths = _column_widths(line_length, positions, len(headers))
    # A column too narrow for its header borrows from the widest one, keeping the total.
    need = [len(h) + 3 for h in headers]
    for i in range(len(widths)):
        while widths[i] < need[i]:
            donor = max(range(len(widths)), key=lambda j: widths[j] - need[j])
            if donor == i or widths[donor] <= need[donor]:
                break
            widths[donor] -= 1
            widths[i] += 1
    # Each column loses 3 characters to borders and padding.
    table = Table(box=box.HEAVY_HEAD, show_lines=True, width=None, expand=False)
    for header, width in zip(headers, widths):
        justify = "right" if header == "Param #" else (
            "center" if header == "Trainable" else "left")
        table.add_column(Text(header), justify=justify, width=max(len(header), width - 3),
                         min_width=len(header), overflow="fold", no_wrap=False)
    for row in rows:
        indent = "   " * row["depth"] + ("└ " if row["depth"] else "")
        cells = [
            Text(f"{indent}{row['name']} ({row['type']})"),
            Text(row["shape"]),
            Text(f"{row['params']:,}"),
        ]
        if graph:
            cells.append(Text(row["connected"]))
        if show_trainable:
            cells.append(Text(row["trainable"]))
        table.add_row(*cells)
    return table


def _footer(model) -> list[str]:
    totals = param_totals(model)
    lines = []
    for key, label in (("total", "Total"), ("trainable", "Trainable"),
                       ("non_trainable", "Non-trainable")):
        count, size = totals[key]
        lines.append(f" {label} params: {count:,} ({readable_size(size)})")
    return lines


def summary_lines(model, line_length=None, positions=None, expand_nested=False,
                  show_trainable=False) -> list[str]:
    """The summary as plain-text lines (no colour codes or markup)."""
    from rich.console import Console

    table, width = _prepare(model, line_length, positions, expand_nested, show_trainable)
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False,
                      highlight=False, emoji=False, legacy_windows=False)
    console.print(table)
    body = [line.rstrip() for line in buffer.getvalue().splitlines()]
    return [f'Model: "{model.name}"'] + body + _footer(model)


def _prepare(model, line_length, positions, expand_nested, show_trainable):
    if not isinstance(model, Functional):
        raise TypeError(f"summary expects a Model, got {type(model).__name__}")
    model._require_graph()
    graph = not _is_sequential(model)
    if line_length is None:
        line_length = (98 if graph else 65) + (10 if show_trainable else 0)
    rows = summary_rows(model, expand_nested=expand_nested)
    table = _build_table(model, rows, line_length, positions, show_trainable)
    return table, line_length + 2


def print_summary(model, line_length=None, positions=None, print_fn=None,
                  expand_nested=False, show_trainable=False):
    """Print the Keras-style summary table of `model`.

    With `print_fn`, each plain-text line is passed to it (Keras 2's contract, handy
    for logging); without, the table is printed to stdout with `rich`.
    """
    if print_fn is not None:
        for line in summary_lines(model, line_length, positions, expand_nested,
                                  show_trainable):
            print_fn(line)
        return None
    from rich.console import Console

    table, width = _prepare(model, line_length, positions, expand_nested, show_trainable)
    console = Console(highlight=False, emoji=False)
    if not console.is_terminal:  # a pipe or a notebook: use the requested width
        console = Console(highlight=False, emoji=False, width=width)
    console.print(f'Model: "{model.name}"', markup=False)
    console.print(table)
    for line in _footer(model):
        console.print(line, markup=False)
    return None
