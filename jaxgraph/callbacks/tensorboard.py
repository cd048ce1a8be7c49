"""TensorBoard: event files written with tensorboardX (no TensorFlow needed).

Layout follows Keras so existing dashboards work: `log_dir/train` and
`log_dir/validation` runs, scalars `epoch_<metric>` (validation metrics without
their `val_` prefix, in the validation run), `batch_<metric>` every `update_freq`
batches, weight histograms tagged `layer/weight`, and the Embedding layers in the
projector (`log_dir/train/projector_config.pbtxt`).

Beyond Keras 3 (whose JAX backend writes no graph): the layer graph is written as
a real GraphDef (one node per layer call, grouped by nested model, with output
shapes), which TensorBoard's Graphs tab draws, together with the model's config
as a text summary; and each layer's outputs on a sample of the validation data
go to histograms tagged `layer/activations`.
"""

from __future__ import annotations

import json
import os
import time
import warnings

import jax
import numpy as np

from .base import Callback


def _learning_rate(model):
    """The optimizer's current learning rate as a float, or None if there is none."""
    try:
        lr = model.optimizer.learning_rate
    except AttributeError:
        return None
    try:
        return None if lr is None else float(lr)
    except (TypeError, ValueError):  # a schedule object, not a number
        return None


# How many validation samples feed the activation histograms.
ACTIVATION_SAMPLES = 32
# At most this many kernel slices become images per weight (write_images).
MAX_IMAGES = 64


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.number) and values.dtype != np.bool_:
        return np.zeros((0,))
    values = values.astype(np.float64).ravel()
    return values[np.isfinite(values)]


def _normalized(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, np.float32)
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def _parse_profile_batch(profile_batch) -> tuple[int, int]:
    """Keras's forms: 0 (off), N (profile batch N), (start, stop) or 'start,stop'."""
    if isinstance(profile_batch, str):
        parts = [p.strip() for p in profile_batch.split(",") if p.strip()]
        profile_batch = tuple(int(p) for p in parts)
    if isinstance(profile_batch, (list, tuple)):
        if len(profile_batch) == 1:
            profile_batch = profile_batch[0]
        elif len(profile_batch) == 2:
            start, stop = (int(v) for v in profile_batch)
            if start < 0 or stop < start:
                raise ValueError(f"profile_batch must satisfy 0 <= start <= stop, got "
                                 f"{profile_batch!r}")
            return start, stop
        else:
            raise ValueError(f"profile_batch must be an int or a pair, got {profile_batch!r}")
    if isinstance(profile_batch, bool) or not isinstance(profile_batch, (int, np.integer)) \
            or profile_batch < 0:
        raise ValueError(f"profile_batch must be a non-negative int or a pair (start, stop), "
                         f"got {profile_batch!r}")
    return int(profile_batch), int(profile_batch)


# ---------------------------------------------------------------------------- the graph


def _shape_proto(shape):
    from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto

    return TensorShapeProto(
        dim=[TensorShapeProto.Dim(size=-1 if d is None else int(d)) for d in shape])


def model_graph_def(model):
    """A TensorBoard GraphDef of the layer graph: one node per layer call.

    Nested models become name scopes (`outer/inner/dense`), so TensorBoard draws
    them as collapsible groups; each node carries its output shapes, dtype and
    its weights' shapes as attributes.
    """
    from tensorboardX.proto.attr_value_pb2 import AttrValue
    from tensorboardX.proto.graph_pb2 import GraphDef
    from tensorboardX.proto.node_def_pb2 import NodeDef
    from tensorboardX.proto.versions_pb2 import VersionDef

    from ..graph.functional import Functional
    from ..graph.tensor import is_symbolic

    nodes = []
    producer: dict[int, str] = {}
    taken: set[str] = set()

    def unique(name: str) -> str:
        candidate, i = name, 1
        while candidate in taken:
            candidate = f"{name}_{i}"
            i += 1
        taken.add(candidate)
        return candidate

    def leaves(tree):
        return jax.tree_util.tree_leaves(tree, is_leaf=is_symbolic)

    def walk(m, scope: str) -> None:
        for node in m._nodes_in_order:
            layer = node.layer
            name = unique(f"{scope}{layer.name}")
            if isinstance(layer, Functional):
                args, _ = node.call_args(lambda t: t)
                for inner, outer in zip(leaves(layer.input), leaves(args[0])):
                    if id(outer) in producer:
                        producer[id(inner)] = producer[id(outer)]
                walk(layer, name + "/")
                for outer, inner in zip(node.output_tensors, leaves(layer.output)):
                    producer[id(outer)] = producer[id(inner)]
                continue
            attr = {
                "_output_shapes": AttrValue(list=AttrValue.ListValue(
                    shape=[_shape_proto(t.shape) for t in node.output_tensors])),
                "dtype": AttrValue(s=str(node.output_tensors[0].dtype).encode()
                                   if node.output_tensors else b""),
            }
            for w in layer.weights:
                attr[f"weight/{w.name}"] = AttrValue(shape=_shape_proto(w.shape))
            inputs = [producer[id(t)] for t in node.input_tensors if id(t) in producer]
            nodes.append(NodeDef(name=name, op=type(layer).__name__, input=inputs, attr=attr))
            for i, t in enumerate(node.output_tensors):
                producer[id(t)] = name if i == 0 else f"{name}:{i}"

    for t in model.inputs:
        name = unique(t.node.layer.name)
        nodes.append(NodeDef(name=name, op="Placeholder", attr={
            "shape": AttrValue(shape=_shape_proto(t.shape)),
            "dtype": AttrValue(s=str(t.dtype).encode()),
        }))
        producer[id(t)] = name
    walk(model, "")
    return GraphDef(node=nodes, versions=VersionDef(producer=22))


def _iter_layers(model):
    """Every leaf layer of a (possibly nested) model, once."""
    from ..graph.functional import Functional

    seen = set()
    stack = [model]
    while stack:
        m = stack.pop(0)
        for layer in m.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if isinstance(layer, Functional):
                stack.append(layer)
            else:
                yield layer


# ---------------------------------------------------------------------------- the callback


class TensorBoard(Callback):
    """Writes TensorBoard logs: metrics, histograms, images, embeddings, the graph
    and (with `profile_batch`) a JAX profiler trace.

    `histogram_freq=N` writes weight histograms (and layer-output histograms on a
    validation sample) every N epochs; `embeddings_freq=N` exports each Embedding
    layer to the projector every N epochs, labelled by `embeddings_metadata` (a
    file path for all layers, or a dict from layer name to path; one label per
    row, or a header row then tab-separated columns). With `update_freq='epoch'`
    (the default) no batch hook is used, so training keeps its fast loop.
    """

    _lazy_logs = True  # reads logs through the lazy view (base.Logs)

    def __init__(self, log_dir="logs", histogram_freq=0, write_graph=True, write_images=False,
                 write_steps_per_second=False, update_freq="epoch", profile_batch=0,
                 embeddings_freq=0, embeddings_metadata=None):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = int(histogram_freq)
        self.write_graph = bool(write_graph)
        self.write_images = bool(write_images)
        self.write_steps_per_second = bool(write_steps_per_second)
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and not (isinstance(update_freq, int) and update_freq > 0):
            raise ValueError(f"TensorBoard: update_freq must be 'epoch', 'batch' or a positive "
                             f"int, got {update_freq!r}")
        self.update_freq = update_freq
        self.profile_batch = profile_batch
        self._profile_start, self._profile_stop = _parse_profile_batch(profile_batch)
        self.embeddings_freq = int(embeddings_freq)
        self.embeddings_metadata = embeddings_metadata
        self._writers: dict = {}
        self._global_train_batch = 0
        self._profiling = False
        self._profiled = False
        self._epoch_start = 0.0
        self._activation_fn = None
        self._activation_model_of = None
        self._activation_tags: list[str] = []

    # ------------------------------------------------------------------ writers

    @property
    def _train_dir(self) -> str:
        return os.path.join(self.log_dir, "train")

    @property
    def _val_dir(self) -> str:
        return os.path.join(self.log_dir, "validation")

    def _writer(self, which: str):
        writer = self._writers.get(which)
        if writer is None:
            from tensorboardX import SummaryWriter

            path = self._train_dir if which == "train" else self._val_dir
            writer = self._writers[which] = SummaryWriter(logdir=path)
        return writer

    def _close_writers(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def wants_batches(self) -> bool:
        """Batch hooks only for `update_freq=<int>` or a pending profile."""
        return self.update_freq != "epoch" or (self._profile_stop > 0 and not self._profiled)

    # ------------------------------------------------------------------ hooks

    def on_train_begin(self, logs=None):
        self._global_train_batch = 0
        if self.write_graph:
            self._write_graph()

    def on_train_end(self, logs=None):
        if self._profiling:
            self._stop_profiler()
        self._close_writers()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        if (not self._profiled and not self._profiling and self._profile_start > 0
                and self._global_train_batch + 1 == self._profile_start):
            self._start_profiler()

    def on_train_batch_end(self, batch, logs=None):
        self._global_train_batch += 1
        step = self._global_train_batch
        if self.update_freq != "epoch" and step % self.update_freq == 0 and logs:
            writer = self._writer("train")
            for key in logs:
                writer.add_scalar(f"batch_{key}", float(logs[key]), step)
        if self._profiling and step >= self._profile_stop:
            self._stop_profiler()

    def on_epoch_end(self, epoch, logs=None):
        self._log_epoch_metrics(epoch, logs or {})
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._log_weights(epoch)
            self._log_activations(epoch)
        if self.embeddings_freq and epoch % self.embeddings_freq == 0:
            self._log_embeddings(epoch)
        for writer in self._writers.values():
            writer.flush()

    # ------------------------------------------------------------------ what gets written

    def _log_epoch_metrics(self, epoch: int, logs) -> None:
        train, val = {}, {}
        for key in logs:
            value = logs[key]
            if isinstance(value, str):
                continue
            if key.startswith("val_"):
                val[key[4:]] = value
            else:
                train[key] = value
        if "learning_rate" not in train:  # Keras's TensorBoard logs it itself
            lr = _learning_rate(self.model)
            if lr is not None:
                train["learning_rate"] = lr
        if self.write_steps_per_second:
            steps = self.params.get("steps") if self.params else None
            elapsed = time.perf_counter() - self._epoch_start
            if steps and elapsed > 0:
                train["steps_per_second"] = steps / elapsed
        if train:
            writer = self._writer("train")
            for key, value in train.items():
                writer.add_scalar(f"epoch_{key}", float(value), epoch)
        if val:
            writer = self._writer("validation")
            for key, value in val.items():
                writer.add_scalar(f"epoch_{key}", float(value), epoch)

    def _write_graph(self) -> None:
        writer = self._writer("train")
        try:
            graph = model_graph_def(self.model)
        except (AttributeError, ValueError) as e:  # a model without a graph yet
            warnings.warn(f"TensorBoard could not write the model graph: {e}", stacklevel=2)
            return
        from tensorboardX.proto import event_pb2

        writer._get_file_writer().add_event(event_pb2.Event(graph_def=graph.SerializeToString()))
        try:
            config = json.dumps(self.model.get_config(), indent=2, default=str)
        except (TypeError, ValueError, NotImplementedError):
            return
        writer.add_text("keras", f"```\n{config}\n```", 0)

    def _log_weights(self, epoch: int) -> None:
        writer = self._writer("train")
        for weight in self.model.weights:
            values = np.asarray(weight.value)
            tag = weight.path.replace(":", "_")
            finite = _finite(values)
            if finite.size:
                writer.add_histogram(tag, finite, epoch)
            if self.write_images:
                self._log_weight_image(writer, tag, values, epoch)

    def _log_weight_image(self, writer, tag: str, values: np.ndarray, epoch: int) -> None:
        if values.ndim == 1:
            writer.add_image(f"{tag}/image", _normalized(values[None, :]), epoch,
                             dataformats="HW")
        elif values.ndim == 2:
            img = values.T if values.shape[0] > values.shape[1] else values
            writer.add_image(f"{tag}/image", _normalized(img), epoch, dataformats="HW")
        elif values.ndim in (3, 4):
            # Convolution kernels: one small image per (input, output) channel pair.
            spatial = values.shape[:-2]
            flat = values.reshape(spatial + (-1,))
            flat = np.moveaxis(flat, -1, 0)[:MAX_IMAGES]
            if flat.ndim == 2:  # Conv1D: (n, k) -> (n, 1, k)
                flat = flat[:, None, :]
            writer.add_images(f"{tag}/image", _normalized(flat)[..., None], epoch,
                              dataformats="NHWC")

    def _activation_sample(self):
        data = self.validation_data
        if data is None:
            return None
        x = data[0] if isinstance(data, (tuple, list)) else data
        if x is None:
            return None
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[:ACTIVATION_SAMPLES], x)

    def _activation_model(self):
        """A model from the same inputs to every layer call's outputs (built once)."""
        if self._activation_model_of is self.model:
            return self._activation_fn
        from ..models import Model

        tensors, tags, counts = [], [], {}
        for node in self.model._nodes_in_order:
            name = node.layer.name
            counts[name] = counts.get(name, 0) + 1
            call = name if counts[name] == 1 else f"{name}_{counts[name] - 1}"
            for i, t in enumerate(node.output_tensors):
                tensors.append(t)
                suffix = "" if len(node.output_tensors) == 1 else f"_{i}"
                tags.append(f"{call}{suffix}/activations")
        sub = Model(self.model.input, tensors, name=f"{self.model.name}_activations")
        apply = jax.jit(lambda variables, x: sub.apply(variables, x)[0])
        self._activation_fn = (sub, apply)
        self._activation_model_of = self.model
        self._activation_tags = tags
        return self._activation_fn

    def _log_activations(self, epoch: int) -> None:
        x = self._activation_sample()
        if x is None:
            return
        sub, apply = self._activation_model()
        outputs = apply(sub.variables, x)
        writer = self._writer("validation")
        for tag, value in zip(self._activation_tags, outputs):
            finite = _finite(np.asarray(value))
            if finite.size:
                writer.add_histogram(tag, finite, epoch)

    def _metadata_for(self, layer_name: str, rows: int):
        meta = self.embeddings_metadata
        if isinstance(meta, dict):
            meta = meta.get(layer_name)
        if meta is None:
            return None, None
        with open(os.fspath(meta), encoding="utf8") as f:
            lines = [line.rstrip("\r\n") for line in f if line.strip("\r\n")]
        header = None
        if lines and "\t" in lines[0]:
            header = lines[0].split("\t")
            labels = [line.split("\t") for line in lines[1:]]
        else:
            labels = lines
        if len(labels) != rows:
            warnings.warn(
                f"TensorBoard: embeddings metadata {meta!r} has {len(labels)} rows but layer "
                f"{layer_name!r} has {rows} embeddings; writing it without labels.",
                stacklevel=3,
            )
            return None, None
        return labels, header

    def _log_embeddings(self, epoch: int) -> None:
        from ..layers import Embedding

        writer = self._writer("train")
        for layer in _iter_layers(self.model):
            if not isinstance(layer, Embedding):
                continue
            weights = [w for w in layer.weights if w.name == "embeddings"]
            if not weights:
                continue
            matrix = np.asarray(weights[0].value)
            labels, header = self._metadata_for(layer.name, matrix.shape[0])
            writer.add_embedding(matrix, metadata=labels, metadata_header=header,
                                 global_step=epoch, tag=layer.name)

    # ------------------------------------------------------------------ profiling

    def _start_profiler(self) -> None:
        os.makedirs(self._train_dir, exist_ok=True)
        jax.profiler.start_trace(self._train_dir)
        self._profiling = True

    def _stop_profiler(self) -> None:
        jax.profiler.stop_trace()
        self._profiling = False
        self._profiled = True
