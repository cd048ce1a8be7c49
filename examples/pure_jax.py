"""Every jaxgraph model is a pure function: init/apply under jax.jit, grad, vmap, optax.

Builds a small MLP with the functional API, then never calls fit: `model.init(key)`
gives the variables, `model.apply(variables, x)` the outputs, and a hand-written optax
loop (jitted) trains it on the real 8x8 digits. `jax.vmap` gives per-example gradient
norms and initializes and runs four independent models at once. The trained variables
go back into the Keras-style model, whose `evaluate` agrees.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgraph import datasets, zoo


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default 30 (5 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    parser.add_argument("--output-dir", default=None, help="unused: nothing is written")
    args = parser.parse_args()
    epochs = args.epochs or (5 if args.quick else 30)

    (x_train, y_train), (x_test, y_test) = datasets.digits.load_data()
    x_train = x_train.reshape(-1, 64).astype("float32") / 255
    x_test = x_test.reshape(-1, 64).astype("float32") / 255
    model = zoo.digits_mlp(input_shape=(64,), units=(64, 64))

    variables = jax.jit(model.init)(jax.random.key(0))
    print("params:", jax.tree_util.tree_map(lambda a: a.shape, variables["params"]))

    def loss_fn(params, x, y):
        probs, _ = model.apply({"params": params, "state": variables["state"]}, x)
        return -jnp.mean(jnp.log(jnp.take_along_axis(probs, y[:, None], axis=1) + 1e-7))

    @jax.jit
    def accuracy(params, x, y):
        probs, _ = model.apply({"params": params, "state": variables["state"]}, x)
        return jnp.mean(jnp.argmax(probs, axis=-1) == y)

    tx = optax.adam(1e-3)

    @jax.jit
    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params, opt_state = variables["params"], tx.init(variables["params"])
    y_train_i, y_test_i = y_train.astype("int32"), y_test.astype("int32")
    rng = np.random.default_rng(0)
    print(f"before training: test accuracy {float(accuracy(params, x_test, y_test_i)):.4f}")
    for epoch in range(epochs):
        order = rng.permutation(len(x_train))
        losses = []
        for start in range(0, len(order) - 31, 32):
            idx = order[start:start + 32]
            params, opt_state, loss = train_step(params, opt_state, x_train[idx], y_train_i[idx])
            losses.append(float(loss))
        if epoch == epochs - 1 or epoch % 5 == 0:
            print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}")
    acc = float(accuracy(params, x_test, y_test_i))
    print(f"hand-written optax loop: test accuracy {acc:.4f}")

    per_example = jax.jit(jax.vmap(jax.grad(loss_fn), in_axes=(None, 0, 0)))
    grads = per_example(params, x_test[:8, None], y_test_i[:8, None])
    norms = jnp.sqrt(sum(jnp.sum(g.reshape(8, -1) ** 2, axis=1)
                         for g in jax.tree_util.tree_leaves(grads)))
    print("per-example gradient norms (vmap of grad):", np.round(np.asarray(norms), 4))

    many = jax.vmap(model.init)(jax.random.split(jax.random.key(1), 4))
    outputs = jax.jit(jax.vmap(lambda v: model.apply(v, x_test[:2])[0]))(many)
    print(f"four models initialized and applied at once (vmap): outputs {outputs.shape}")

    model.variables = {"params": params, "state": variables["state"]}
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _, keras_acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"the same variables through model.evaluate: accuracy {keras_acc:.4f}")


if __name__ == "__main__":
    main()
