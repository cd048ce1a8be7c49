"""Random search over a digits MLP (KerasTuner's spelling), then a vmapped learning-rate sweep.

`tune.RandomSearch` samples depth, widths, dropout, optimizer and learning rate with
Optuna's RandomSampler; the best model (weights of its best epoch) is scored on the
test set against the same network with default hyperparameters. Then
`tune.train_population` retrains the best architecture with 8 learning rates as one
compiled, vmapped program. With --directory the study lives in SQLite and a second
run resumes it.
"""

import argparse
import time

import numpy as np

from jaxgraph import Input, Model, datasets, layers, optimizers, tune, utils


def load_digits():
    (x_train, y_train), (x_test, y_test) = datasets.digits.load_data()
    return (x_train.reshape(-1, 64).astype("float32") / 255, y_train,
            x_test.reshape(-1, 64).astype("float32") / 255, y_test)


def build_model(hp):
    """A densely connected classifier whose shape and training are hyperparameters."""
    inputs = Input(shape=(64,), name="image")
    x = inputs
    for i in range(hp.Int("layers", 1, 3)):
        x = layers.Dense(hp.Int(f"units_{i}", 16, 128, step=16), activation="relu")(x)
        x = layers.Dropout(hp.Float("dropout", 0.0, 0.4, step=0.1))(x)
    outputs = layers.Dense(10, activation="softmax", name="digit")(x)
    model = Model(inputs, outputs)
    rate = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3)
    kind = hp.Choice("optimizer", ["rmsprop", "adam"])
    optimizer = optimizers.RMSprop(rate) if kind == "rmsprop" else optimizers.Adam(rate)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["acc"])
    return model


def test_accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0).argmax(-1) == y))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default 20 (3 with --quick)")
    parser.add_argument("--trials", type=int, default=None, help="default 12 (3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    parser.add_argument("--directory", default=None,
                        help="keep the study (SQLite) and best models here; reruns resume")
    args = parser.parse_args()
    epochs = args.epochs or (3 if args.quick else 20)
    trials = args.trials or (3 if args.quick else 12)
    utils.set_random_seed(0)
    x, y, x_test, y_test = load_digits()

    tuner = tune.RandomSearch(build_model, objective="val_acc", max_trials=trials, seed=0,
                              directory=args.directory, project_name="digits_mlp_random")
    start = time.perf_counter()
    tuner.search(x, y, epochs=epochs, batch_size=64, validation_split=0.2)
    print(f"search: {time.perf_counter() - start:.1f}s")

    best_hp = tuner.get_best_hyperparameters()[0]
    best = tuner.get_best_models()[0]
    default = build_model(tune.HyperParameters())
    default.fit(x, y, epochs=epochs, batch_size=64, validation_split=0.2, verbose=0)
    acc_best, acc_default = test_accuracy(best, x_test, y_test), test_accuracy(default, x_test,
                                                                                y_test)
    print(f"best hyperparameters: {best_hp}")
    print(f"test accuracy: searched {acc_best:.4f}, defaults {acc_default:.4f} "
          f"(gain {acc_best - acc_default:+.4f})")

    # Refine the learning rate of the best architecture: 8 rates, one compiled program.
    rates = np.geomspace(best_hp["learning_rate"] / 4, best_hp["learning_rate"] * 4, 8)
    pinned = tune.HyperParameters(values=best_hp)
    start = time.perf_counter()
    population = tune.train_population(lambda: build_model(pinned),
                                       {"learning_rate": rates}, x, y, epochs=epochs,
                                       batch_size=64, validation_split=0.2, seed=0)
    seconds = time.perf_counter() - start
    i = population.best("val_acc")
    model = population.get_model(i)
    acc_pop = test_accuracy(model, x_test, y_test)
    print(f"population of {len(population)} learning rates in {seconds:.1f}s: best "
          f"{rates[i]:.2e} -> val_acc {max(population.histories[i]['val_acc']):.4f}, "
          f"test accuracy {acc_pop:.4f} (gain over the search's best {acc_pop - acc_best:+.4f})")


if __name__ == "__main__":
    main()
