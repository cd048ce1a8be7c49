"""The book's examples (chapters 5-7) run with --quick and print the line that makes their
point. The search and ensemble examples belong to jaxgraph.tune / jaxgraph.ensemble's tests."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300  # seconds per script; each takes well under a minute on an idle CPU

EXPECTED = {
    "digits_convnet": r"test accuracy: 0\.\d{4}",
    "question_answering": r"predictions from a list and from a dict agree: True",
    "multi_output": r"with dicts: test age_loss=",
    "inception_module": r"input \(None, 16, 16, 64\) -> output \(None, 8, 8, 512\)",
    "residual_blocks": r"the block returns its input: True",
    "siamese_lstm": r"LSTM entries in the params pytree: 1 \(shared_lstm\), used by 2 calls",
    "dual_camera": r"test accuracy of the predicted shift: \d\.\d{4}",
    "callbacks": r"ActivationLogger wrote 3 files",
    "tensorboard": r"tensorboard --logdir \S+logs",
    "batchnorm_separable": r"state updated by training: True",
    "pure_jax": r"hand-written optax loop: test accuracy 0\.\d{4}",
}


SCRIPTS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py"))


def test_the_book_examples_exist():
    assert set(EXPECTED) <= set(SCRIPTS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_quick(name, tmp_path):
    script = os.path.join(ROOT, "examples", f"{name}.py")
    result = subprocess.run(
        [sys.executable, script, "--quick", "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert re.search(EXPECTED[name], result.stdout), result.stdout[-3000:]
