"""Section 7.2.1: callbacks act on a model during training.

EarlyStopping stops when validation accuracy stops improving (and restores the best
weights), ModelCheckpoint keeps the best model by validation loss, ReduceLROnPlateau
cuts the learning rate when the validation loss plateaus, and a custom callback (the
book's ActivationLogger) saves every layer's activations on one validation sample to
one .npz file per epoch. Trained on the real 8x8 digits.
"""

import argparse
import os
import tempfile

import numpy as np

from jaxgraph import Model, callbacks, datasets, models, utils, zoo


class ActivationLogger(callbacks.Callback):
    """After each epoch, saves each layer's output for the first validation sample."""

    def __init__(self, directory):
        super().__init__()
        self.directory = directory
        self.written = []

    def set_model(self, model):
        super().set_model(model)
        layer_outputs = [layer.output for layer in model.layers]
        self.activations_model = Model(model.input, layer_outputs)
        self.names = [layer.name for layer in model.layers]

    def on_epoch_end(self, epoch, logs=None):
        if self.validation_data is None:
            raise RuntimeError("ActivationLogger requires validation data")
        validation_sample = self.validation_data[0][0:1]
        activations = self.activations_model.predict(validation_sample, verbose=0)
        path = os.path.join(self.directory, f"activations_at_epoch_{epoch}.npz")
        np.savez(path, **{name: np.asarray(a) for name, a in zip(self.names, activations)})
        self.written.append(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default 30 (3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    parser.add_argument("--output-dir", default=None, help="default: a new temporary directory")
    args = parser.parse_args()
    epochs = args.epochs or (3 if args.quick else 30)
    out = args.output_dir or tempfile.mkdtemp(prefix="jaxgraph-callbacks-")
    os.makedirs(out, exist_ok=True)

    utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = datasets.digits.load_data()
    x_train = x_train[..., None].astype("float32") / 255
    x_test = x_test[..., None].astype("float32") / 255
    n_val = 200
    x_val, y_val = x_train[-n_val:], y_train[-n_val:]
    x_train, y_train = x_train[:-n_val], y_train[:-n_val]

    model = zoo.digits_convnet()
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["acc"])
    checkpoint_path = os.path.join(out, "my_model.h5")
    logger = ActivationLogger(out)
    callbacks_list = [
        callbacks.EarlyStopping(monitor="val_acc", patience=4, restore_best_weights=True),
        callbacks.ModelCheckpoint(filepath=checkpoint_path, monitor="val_loss",
                                  save_best_only=True),
        callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=2),
        logger,
    ]
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=32,
                        validation_data=(x_val, y_val), callbacks=callbacks_list, verbose=2)
    ran = len(history.history["loss"])
    print(f"epochs run: {ran} of {epochs}"
          + (" (stopped early by EarlyStopping)" if ran < epochs else ""))
    print("learning rate per epoch: "
          + ", ".join(f"{lr:g}" for lr in history.history["learning_rate"]))
    best = models.load_model(checkpoint_path)
    _, acc = best.evaluate(x_test, y_test, verbose=0)
    print(f"best checkpoint {checkpoint_path}: test accuracy {acc:.4f}")
    with np.load(logger.written[-1]) as last:
        shapes = {k: last[k].shape for k in last.files}
    print(f"ActivationLogger wrote {len(logger.written)} files; the last holds {shapes}")


if __name__ == "__main__":
    main()
