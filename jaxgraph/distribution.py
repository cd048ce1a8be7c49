"""Scale-out with `jax.sharding`: the same `fit` on several devices (and hosts).

`DataParallel` splits every batch along a 'batch' mesh axis and replicates the
variables; `ModelParallel` additionally shards chosen parameters along a 'model'
axis by a layout map of regular expressions over weight paths ('dense_1/kernel').
XLA's SPMD partitioner inserts the collectives. Sizes are checked up front, so an
indivisible batch or weight dimension is reported before anything compiles.
"""

from __future__ import annotations

import re

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

_current = [None]


class DataParallel:
    """Replicate variables, shard batches over `devices` (default: all of them)."""

    def __init__(self, devices=None):
        devices = list(devices if devices is not None else jax.devices())
        if not devices:
            raise ValueError("DataParallel needs at least one device")
        self.mesh = Mesh(np.array(devices).reshape(len(devices), 1), ("batch", "model"))

    @property
    def num_replicas(self) -> int:
        return self.mesh.shape["batch"]

    def batch_sharding(self, ndim: int) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec("batch", *([None] * (ndim - 1))))

    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def param_sharding(self, path: str, shape: tuple) -> NamedSharding:
        return self.replicated()

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.num_replicas:
            raise ValueError(
                f"batch_size={batch_size} is not divisible by the {self.num_replicas} devices "
                f"of the data-parallel mesh; use a multiple of {self.num_replicas}"
            )

    def shard_variables(self, tree: dict) -> dict:
        """Place a {'params'/'train'/...: nested dict} tree according to this layout."""
        def place(path, leaf):
            if not hasattr(leaf, "shape"):
                return leaf
            name = "/".join(str(getattr(k, "key", k)) for k in path)
            return jax.device_put(leaf, self.param_sharding(name, tuple(leaf.shape)))

        return jax.tree_util.tree_map_with_path(place, tree)


class ModelParallel(DataParallel):
    """Data parallel over `batch` x sharded parameters over `model`.

    `layout_map` maps regexes over weight paths to PartitionSpecs written with the
    axis names 'batch' and 'model', e.g. {r'dense.*/kernel': (None, 'model')}.
    """

    def __init__(self, mesh_shape: tuple[int, int], layout_map: dict, devices=None):
        devices = list(devices if devices is not None else jax.devices())
        n = int(np.prod(mesh_shape))
        if n != len(devices):
            raise ValueError(f"mesh_shape {mesh_shape} needs {n} devices, {len(devices)} given")
        self.mesh = Mesh(np.array(devices).reshape(mesh_shape), ("batch", "model"))
        self.layout_map = [(re.compile(k), PartitionSpec(*v)) for k, v in layout_map.items()]

    def param_sharding(self, path: str, shape: tuple) -> NamedSharding:
        for pattern, spec in self.layout_map:
            if pattern.search(path):
                for dim, axis in zip(shape, spec):
                    if axis is not None and dim % self.mesh.shape[axis]:
                        raise ValueError(
                            f"Weight {path!r} of shape {shape} cannot be sharded with {spec}: "
                            f"dimension {dim} is not divisible by the {self.mesh.shape[axis]} "
                            f"devices of mesh axis {axis!r}"
                        )
                if len(spec) > len(shape):
                    raise ValueError(f"Layout {spec} has more axes than weight {path!r} {shape}")
                return NamedSharding(self.mesh, spec)
        return self.replicated()


def set_distribution(distribution) -> None:
    """Use `distribution` for every model compiled afterwards (None: one device)."""
    _current[0] = distribution


def distribution():
    return _current[0]
