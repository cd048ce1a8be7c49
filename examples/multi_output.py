"""Section 7.1.3: one network, three heads (age, income, gender), three losses.

Compiles the same architecture twice: with losses and loss weights as lists (in output
order) and as dicts keyed by output name, the book's two spellings. The data is
SYNTHETIC (generated here, seeded; the book's social-media posts are not public): see
`jaxgraph.zoo.synthetic_posts`. Age is in decades, so its MSE starts near the book's 3-5
and the weights 0.25 / 1 / 10 balance the three losses as in the book.
"""

import argparse

from jaxgraph import optimizers, utils, zoo

VOCABULARY_SIZE, NUM_INCOME_GROUPS, SEQ_LEN = 2000, 10, 100


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default 15 (2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short run, for smoke tests")
    parser.add_argument("--output-dir", default=None, help="unused: nothing is written")
    args = parser.parse_args()
    epochs = args.epochs or (2 if args.quick else 15)
    n_train = 600 if args.quick else 2000

    utils.set_random_seed(0)
    posts, targets = zoo.synthetic_posts(n_train + 500, VOCABULARY_SIZE, SEQ_LEN,
                                         NUM_INCOME_GROUPS, seed=0)
    targets["income"] = utils.to_categorical(targets["income"], NUM_INCOME_GROUPS)
    train_x, test_x = posts[:n_train], posts[n_train:]
    train_y = {k: v[:n_train] for k, v in targets.items()}
    test_y = {k: v[n_train:] for k, v in targets.items()}
    print(f"synthetic posts: {n_train} training and 500 test samples of {SEQ_LEN} tokens")

    # 1. Lists, in the order of model.outputs (age, income, gender).
    model = zoo.multi_output_posts(VOCABULARY_SIZE, NUM_INCOME_GROUPS, SEQ_LEN)
    print("outputs:", model.output_names)
    model.compile(optimizer=optimizers.RMSprop(learning_rate=3e-3),
                  loss=["mse", "categorical_crossentropy", "binary_crossentropy"],
                  loss_weights=[0.25, 1.0, 10.0])
    history = model.fit(train_x, [train_y["age"], train_y["income"], train_y["gender"]],
                        epochs=epochs, batch_size=64, verbose=2)
    print("with lists: final losses " + ", ".join(
        f"{k}={history.history[k][-1]:.3f}" for k in
        ("loss", "age_loss", "income_loss", "gender_loss")))

    # 2. Dicts keyed by output name: targets, losses, weights and metrics alike.
    model = zoo.multi_output_posts(VOCABULARY_SIZE, NUM_INCOME_GROUPS, SEQ_LEN)
    model.compile(optimizer=optimizers.RMSprop(learning_rate=3e-3),
                  loss={"age": "mse", "income": "categorical_crossentropy",
                        "gender": "binary_crossentropy"},
                  loss_weights={"age": 0.25, "income": 1.0, "gender": 10.0},
                  metrics={"age": ["mae"], "income": ["accuracy"], "gender": ["accuracy"]})
    model.fit(train_x, train_y, epochs=epochs, batch_size=64, validation_split=0.1, verbose=2)
    results = model.evaluate(test_x, test_y, verbose=0, return_dict=True)
    print("with dicts: test " + ", ".join(f"{k}={v:.3f}" for k, v in sorted(results.items())))
    age, income, gender = model.predict(test_x[:3], verbose=0)
    for i in range(3):
        print(f"  post {i}: age {10 * float(age[i, 0]):.0f} (true "
              f"{10 * float(test_y['age'][i, 0]):.0f}), income group "
              f"{int(income[i].argmax())} (true {int(test_y['income'][i].argmax())}), "
              f"gender {float(gender[i, 0]):.2f} (true {int(test_y['gender'][i, 0])})")


if __name__ == "__main__":
    main()
