"""The `jaxgraph train` command end to end, its error messages, and the model zoo."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jaxgraph import cli, zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "digits_convnet.yaml")
TIMEOUT = 600


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "jaxgraph", *args], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=cwd or ROOT)


def history_epochs(run_dir):
    with open(os.path.join(run_dir, "history.csv"), newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cli") / "run")
    result = run_cli("train", CONFIG, "--set", "epochs=2", "--output-dir", out)
    assert result.returncode == 0, result.stderr
    return out, result


def test_train_writes_every_output(trained_run):
    out, result = trained_run
    for name in ("model.jgraph", "history.csv", "config.resolved.yaml", "test_metrics.json",
                 os.path.join("checkpoints", "best.jgraph")):
        assert os.path.isfile(os.path.join(out, name)), name
    assert os.listdir(os.path.join(out, "backup"))
    events = [f for _, _, files in os.walk(os.path.join(out, "tensorboard")) for f in files
              if f.startswith("events.out.tfevents")]
    assert events
    assert history_epochs(out) == [0, 1]
    # Not a terminal: one progress line per epoch, then the test metrics.
    assert "Epoch 1/2" in result.stdout and "Epoch 2/2" in result.stdout
    assert "test: accuracy:" in result.stdout
    with open(os.path.join(out, "config.resolved.yaml")) as f:
        resolved = cli.yaml.safe_load(f)
    assert resolved["epochs"] == 2 and resolved["output_dir"] == out


def test_saved_model_loads_and_predicts(trained_run):
    from jaxgraph import datasets
    from jaxgraph.models import load_model

    out, _ = trained_run
    model = load_model(os.path.join(out, "model.jgraph"))
    _, (x_test, y_test) = datasets.digits.load_data()
    probs = model.predict(x_test[..., None].astype("float32") / 255, verbose=0)
    assert probs.shape == (360, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    with open(os.path.join(out, "test_metrics.json")) as f:
        reported = json.load(f)["accuracy"]
    assert float(np.mean(probs.argmax(axis=1) == y_test)) == pytest.approx(reported, abs=1e-6)
    assert reported > 0.5  # two epochs are far above chance (0.1)


def test_resume_continues_from_the_backup(trained_run, tmp_path):
    out = str(tmp_path / "run")
    shutil.copytree(trained_run[0], out)
    result = run_cli("train", CONFIG, "--resume", "--set", "epochs=3", "--output-dir", out)
    assert result.returncode == 0, result.stderr
    assert "Epoch 3/3" in result.stdout and "Epoch 1/3" not in result.stdout
    assert history_epochs(out) == [0, 1, 2]


@pytest.mark.parametrize("name, config, extra, expected", [
    ("malformed", "model:\n  builder: digits_convnet\n data: [\n", [], "bad.yaml:3:"),
    ("unknown_model", "model: {builder: no_such_model}\ndata: {dataset: digits}\n", [],
     "unknown model 'no_such_model'; known models: digits_convnet"),
    ("unknown_layer", "model:\n  sequential:\n    - Flatten\n    - Dense2: {units: 10}\n"
     "data: {dataset: digits, scale: 255}\n", [],
     "model.sequential[1]: unknown layer 'Dense2'; did you mean 'Dense'?"),
    ("unknown_loss", "model: {builder: digits_mlp, args: {input_shape: [8, 8]}}\n"
     "data: {dataset: digits, scale: 255, one_hot: true}\nloss: categorical_crossentropyy\n",
     [], "loss: unknown loss 'categorical_crossentropyy'"),
    ("missing_npz", "model: {builder: digits_mlp}\ndata: {dataset: missing/data.npz}\n", [],
     "data file 'missing/data.npz' not found"),
    ("unknown_optimizer", "model: {builder: digits_mlp}\ndata: {dataset: digits}\n",
     ["--set", "optimizer.name=adamm"], "unknown optimizer 'adamm'; did you mean 'adam'?"),
    ("bad_override", "model: {builder: digits_mlp}\ndata: {dataset: digits}\n",
     ["--set", "optimiser.learning_rate=1e-3"], "unknown config key 'optimiser'"),
    ("unknown_dataset", "model: {builder: digits_mlp}\ndata: {dataset: cifar}\n", [],
     "unknown dataset 'cifar'"),
])
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, name, config, extra, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(config)
    result = run_cli("train", str(path), "--output-dir", str(tmp_path / "out"), *extra,
                     cwd=str(tmp_path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("jaxgraph: error: ") and expected in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- in process


def test_overrides_parse_yaml_values_and_nested_paths():
    config = {"optimizer": "adam", "epochs": 5, "callbacks": [{"EarlyStopping": {}}]}
    cli.apply_override(config, "optimizer.learning_rate=3e-4")
    cli.apply_override(config, "epochs=7")
    cli.apply_override(config, "metrics=[accuracy, mae]")
    cli.apply_override(config, "callbacks.0.EarlyStopping.patience=2")
    assert config["optimizer"] == {"name": "adam", "learning_rate": 3e-4}
    assert config["epochs"] == 7 and config["metrics"] == ["accuracy", "mae"]
    assert config["callbacks"][0]["EarlyStopping"]["patience"] == 2
    for bad in ("epochs", "epochs.x=1", "callbacks.5.x=1", "nope=1"):
        with pytest.raises(cli.ConfigError):
            cli.apply_override(config, bad)


def test_shipped_configs_parse_and_resolve():
    for name in ("digits_convnet", "multi_output", "resnet"):
        path = os.path.join(ROOT, "configs", f"{name}.yaml")
        args = cli.build_parser().parse_args(["train", path])
        config = cli.resolve_config(cli.load_config(path), path, args)
        assert config["output_dir"] == os.path.join("runs", name)
        assert zoo.get_builder(config["model"]["builder"]) in zoo.REGISTRY.values()
        optimizer = config["optimizer"]
        assert isinstance(optimizer["learning_rate"], float)  # "1.0e-3", not a string


def test_zoo_builders():
    with pytest.raises(ValueError, match="known models: digits_convnet, digits_mlp"):
        zoo.get_builder("nope")
    assert zoo.get_builder("jaxgraph.zoo:resnet_small") is zoo.resnet_small
    convnet = zoo.digits_convnet()
    assert convnet.output_shape == (None, 10) and convnet.count_params() == 72842
    posts = zoo.multi_output_posts(vocabulary_size=500, num_income_groups=4, seq_len=60)
    assert posts.output_names == ["age", "income", "gender"]
    resnet = zoo.resnet_small(blocks=(16, 32))
    assert any(type(layer).__name__ == "BatchNormalization" for layer in resnet.layers)
    assert resnet.output_shape == (None, 10)


def test_synthetic_posts_are_seeded_and_carry_their_labels():
    x, y = zoo.synthetic_posts(200, vocabulary_size=1000, seq_len=50, num_income_groups=5,
                               seed=3)
    x2, _ = zoo.synthetic_posts(200, vocabulary_size=1000, seq_len=50, num_income_groups=5,
                                seed=3)
    np.testing.assert_array_equal(x, x2)
    assert x.shape == (200, 50) and x.dtype == np.int32
    counts = np.stack([((x >= 21 + 10 * g) & (x < 31 + 10 * g)).sum(1) for g in range(5)], 1)
    np.testing.assert_array_equal(counts.argmax(1), y["income"])
    assert y["age"].shape == (200, 1) and 1.8 <= y["age"].min() <= y["age"].max() <= 7.0
