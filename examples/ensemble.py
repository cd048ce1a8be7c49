"""Ensembles on the digits: a convnet + an MLP + gradient-boosted trees, and 8 vmapped MLPs.

1. A convnet and an MLP (jaxgraph) and scikit-learn's HistGradientBoostingClassifier
   are trained on 80% of the training images; `fit_ensemble_weights` tunes their
   weights on the other 20%, and `weighted_average` combines their test predictions.
   The two networks also form an `Ensemble` model (a jaxgraph Model) with weights
   tuned for the pair.
2. `fit_vmapped` trains 8 MLPs from different seeds in one compiled program.
Each part prints its test accuracy gain over its best single member.
"""

import argparse
import time

import jax
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from jaxgraph import datasets, ensemble, utils, zoo


def accuracy(probabilities, labels):
    return float(np.mean(np.asarray(probabilities).argmax(-1) == labels))


def compiled(model):
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["acc"])
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default 20 (3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    args = parser.parse_args()
    epochs = args.epochs or (3 if args.quick else 20)
    utils.set_random_seed(0)
    (x_all, y_all), (x_test, y_test) = datasets.digits.load_data()
    x_all = x_all.reshape(-1, 8, 8, 1).astype("float32") / 255
    x_test = x_test.reshape(-1, 8, 8, 1).astype("float32") / 255
    cut = int(0.8 * len(x_all))
    x, y, x_val, y_val = x_all[:cut], y_all[:cut], x_all[cut:], y_all[cut:]

    # ------------------------------------------------------------------ 1. three kinds
    start = time.perf_counter()
    convnet = compiled(zoo.digits_convnet())
    convnet.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    mlp = compiled(zoo.digits_mlp(input_shape=(8, 8, 1)))
    mlp.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    trees = HistGradientBoostingClassifier(max_iter=30 if args.quick else 150, random_state=0)
    trees.fit(x.reshape(len(x), -1), y)

    def predict_all(images):
        return [convnet.predict(images, verbose=0), mlp.predict(images, verbose=0),
                trees.predict_proba(images.reshape(len(images), -1)).astype("float32")]

    names = ["convnet", "mlp", "gradient-boosted trees"]
    weights = ensemble.fit_ensemble_weights(predict_all(x_val), y_val=y_val)
    test_predictions = predict_all(x_test)
    singles = [accuracy(p, y_test) for p in test_predictions]
    uniform = accuracy(ensemble.weighted_average(test_predictions), y_test)
    tuned = accuracy(ensemble.weighted_average(test_predictions, weights), y_test)
    for name, w, acc in zip(names, weights, singles):
        print(f"{name:>24}: weight {w:.3f}, test accuracy {acc:.4f}")
    print(f"weights tuned for validation log-loss: test accuracy {tuned:.4f}, gain over the "
          f"best member {tuned - max(singles):+.4f}; uniform average {uniform:.4f}, gain "
          f"{uniform - max(singles):+.4f} ({time.perf_counter() - start:.1f}s)")

    # The two networks as one jaxgraph Model, with weights tuned for this pair.
    pair = ensemble.fit_ensemble_weights([convnet, mlp], x_val, y_val)
    networks = compiled(ensemble.Ensemble([convnet, mlp], weights=pair, name="nets"))
    nets_acc = accuracy(networks.predict(x_test, verbose=0), y_test)
    print(f"Ensemble model of the two networks ({networks.count_params()} parameters): test "
          f"accuracy {nets_acc:.4f}, gain over its best member "
          f"{nets_acc - max(singles[:2]):+.4f}")

    # ------------------------------------------------------------------ 2. vmapped members
    start = time.perf_counter()
    members = ensemble.fit_vmapped(lambda: compiled(zoo.digits_mlp(input_shape=(8, 8, 1))), 8,
                                   x, y, seed=0, epochs=epochs, batch_size=32)
    seconds = time.perf_counter() - start
    # Every member's test predictions in one vmapped call of the pure model.
    template = members.population.model
    probabilities = jax.vmap(lambda v: template.apply(v, x_test)[0])(
        members.population.variables)
    member_acc = [accuracy(p, y_test) for p in probabilities]
    acc = accuracy(members.predict(x_test, verbose=0), y_test)
    print(f"fit_vmapped: 8 MLPs in one program ({seconds:.1f}s); members "
          f"{min(member_acc):.4f}..{max(member_acc):.4f}, ensemble {acc:.4f}, gain over the "
          f"best member {acc - max(member_acc):+.4f}")


if __name__ == "__main__":
    main()
