"""Weights drawn on the host against drawn on the accelerator: time and equality.

    python -m benchmarks.init_on_host        (on a GPU or TPU machine)

Builds the resnet workload's model twice from one seed: once as jaxgraph does on an
accelerator (the host CPU backend draws, one transfer moves them), once with the size
limit set to 0 (drawn on the device). Prints each time, compile included, and whether
the two sets of weights are bit-identical.
"""

import time

import jax
import numpy as np

import jaxgraph
from benchmarks import jaxgraph_method
from benchmarks.workloads import WORKLOADS
from jaxgraph.lowering import executor


def draw(limit: int):
    """The resnet's weights drawn under host-size limit `limit`, and the seconds it took."""
    executor.HOST_INIT_MAX_ELEMENTS = limit
    executor._INIT_PROGRAMS.clear()  # compile afresh: the compile is what differs
    jaxgraph.utils.set_random_seed(0)
    model = jaxgraph_method.build(WORKLOADS["resnet"])
    t = time.perf_counter()
    variables = jax.block_until_ready(model.variables)
    seconds = time.perf_counter() - t
    leaf = jax.tree_util.tree_leaves(variables)[0]
    where = "committed" if leaf.committed else "uncommitted"
    return model.get_weights(), seconds, f"{where} on {sorted(leaf.devices())}"


def main():
    default = executor.HOST_INIT_MAX_ELEMENTS
    host, host_s, host_where = draw(default)
    device, device_s, device_where = draw(0)
    executor.HOST_INIT_MAX_ELEMENTS = default
    print(f"backend {jax.default_backend()}: host draw {host_s:.2f} s ({host_where}), "
          f"device draw {device_s:.2f} s ({device_where})")
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(host, device))
    same = all(np.array_equal(a, b) for a, b in zip(host, device))
    print(f"max abs difference, host against device draw: {diff}; bit-identical: {same}")


if __name__ == "__main__":
    main()
