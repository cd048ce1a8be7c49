"""Dtype policies: which dtype variables are stored in, which dtype layers compute in.

`"mixed_bfloat16"` keeps variables (and so the optimizer and the loss) in float32
while layers compute in bfloat16, the standard recipe for speed on GPU and TPU.
"""

from __future__ import annotations

import jax.numpy as jnp

_POLICIES = {
    "float32": ("float32", "float32"),
    "float64": ("float64", "float64"),
    "float16": ("float16", "float16"),
    "bfloat16": ("bfloat16", "bfloat16"),
    "mixed_float16": ("float32", "float16"),
    "mixed_bfloat16": ("float32", "bfloat16"),
}


class DTypePolicy:
    """A named (variable_dtype, compute_dtype) pair."""

    def __init__(self, name: str = "float32"):
        if isinstance(name, DTypePolicy):
            name = name.name
        name = jnp.dtype(name).name if name not in _POLICIES and _is_dtype(name) else name
        if name not in _POLICIES:
            raise ValueError(f"Unknown dtype policy {name!r}; expected one of {sorted(_POLICIES)}")
        self.name = name
        self.variable_dtype, self.compute_dtype = _POLICIES[name]

    def __repr__(self):
        return f"<DTypePolicy {self.name}>"

    def __eq__(self, other):
        return isinstance(other, DTypePolicy) and other.name == self.name

    def __hash__(self):
        return hash(self.name)


def _is_dtype(x) -> bool:
    try:
        jnp.dtype(x)
        return True
    except TypeError:
        return False


_global = DTypePolicy("float32")


def set_global_policy(policy) -> None:
    """Policy for layers created from now on (Keras's `mixed_precision.set_global_policy`)."""
    global _global
    _global = DTypePolicy(policy)


def global_policy() -> DTypePolicy:
    return _global


def get(policy) -> DTypePolicy:
    if policy is None:
        return _global
    if isinstance(policy, dict):  # a Keras 3 config: {'class_name': 'DTypePolicy', 'config': ...}
        policy = policy.get("config", {}).get("name", "float32")
    return policy if isinstance(policy, DTypePolicy) else DTypePolicy(policy)
