"""TPE search with median pruning over the digits convnet (Optuna under KerasTuner's names).

`tune.TPESearch` proposes filters, dense width, dropout and learning rate with
Optuna's Tree-structured Parzen Estimator; each epoch's val_loss is reported to a
median pruner, which stops trials that are behind the median of earlier trials at
the same epoch. The best model is compared on the test set with the book's convnet
(chapter 5's hyperparameters), which the search tries first.
"""

import argparse
import time

import numpy as np
import optuna

from jaxgraph import Input, Model, datasets, layers, optimizers, tune, utils


def load_digits():
    (x_train, y_train), (x_test, y_test) = datasets.digits.load_data()
    return (x_train.reshape(-1, 8, 8, 1).astype("float32") / 255, y_train,
            x_test.reshape(-1, 8, 8, 1).astype("float32") / 255, y_test)


def build_convnet(hp):
    """Chapter 5's convnet ('same' padding for 8x8 inputs) with searchable sizes."""
    filters = hp.Choice("filters", [16, 32, 64], default=32)
    inputs = Input(shape=(8, 8, 1), name="image")
    x = layers.Conv2D(filters, 3, activation="relu", padding="same")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(2 * filters, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D(2)(x)
    if hp.Boolean("third_conv", default=True):
        with hp.conditional_scope("third_conv", [True]):
            x = layers.Conv2D(hp.Choice("third_filters", [32, 64], default=64), 3,
                              activation="relu", padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(hp.Int("dense_units", 32, 128, step=32, default=64), activation="relu")(x)
    x = layers.Dropout(hp.Float("dropout", 0.0, 0.5, step=0.1))(x)
    outputs = layers.Dense(10, activation="softmax", name="digit")(x)
    model = Model(inputs, outputs)
    model.compile(optimizer=optimizers.RMSprop(hp.Float("learning_rate", 1e-4, 1e-2,
                                                        sampling="log", default=1e-3)),
                  loss="sparse_categorical_crossentropy", metrics=["acc"])
    return model


def test_accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0).argmax(-1) == y))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default 12 (2 with --quick)")
    parser.add_argument("--trials", type=int, default=None, help="default 16 (2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    parser.add_argument("--directory", default=None,
                        help="keep the study (SQLite) and best models here; reruns resume")
    args = parser.parse_args()
    epochs = args.epochs or (2 if args.quick else 12)
    trials = args.trials or (2 if args.quick else 16)
    utils.set_random_seed(0)
    x, y, x_test, y_test = load_digits()

    # Prune only after two finished trials and one full epoch of each trial.
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    tuner = tune.TPESearch(build_convnet, objective="val_loss", max_trials=trials, seed=0,
                           pruner=pruner, directory=args.directory,
                           project_name="digits_convnet_tpe")
    book = {"filters": 32, "third_conv": True, "third_filters": 64, "dense_units": 64,
            "dropout": 0.0, "learning_rate": 1e-3}
    if not tuner.results:  # a fresh study: the book's convnet is trial 0
        tuner.enqueue(book)
    start = time.perf_counter()
    tuner.search(x, y, epochs=epochs, batch_size=64, validation_split=0.2)
    print(f"search: {time.perf_counter() - start:.1f}s, "
          f"{sum(r['status'] == 'PRUNED' for r in tuner.results)} trials pruned")

    best = tuner.get_best_models()[0]
    book_trial = next(r for r in tuner.results if r["hyperparameters"] == book)
    acc_best = test_accuracy(best, x_test, y_test)
    acc_book = test_accuracy(tuner.get_model(book_trial["number"]), x_test, y_test)
    print(f"best hyperparameters: {tuner.get_best_hyperparameters()[0]}")
    print(f"test accuracy: searched {acc_best:.4f}, book's convnet {acc_book:.4f} "
          f"(gain {acc_best - acc_book:+.4f})")


if __name__ == "__main__":
    main()
