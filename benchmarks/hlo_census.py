"""Count what XLA made of a training step: instructions, fusions, library calls.

    XLA_FLAGS="--xla_dump_to=DIR --xla_dump_hlo_pass_re=^$" \\
        python -m benchmarks.compile_breakdown resnet_bf16 jaxgraph --samples 2048
    python -m benchmarks.hlo_census DIR [DIR ...]

For each dump directory, the largest optimised train-step module (jaxgraph's `chunk`,
Keras's `train_step`, Flax's `<lambda>`): its instruction, fusion and while-loop counts,
custom-call targets (cuDNN convolutions) and fusion kinds (Triton). Compile time on a GPU
follows what has to be autotuned, so this compares two programs' compile work.
"""

import collections
import glob
import re
import sys


def main(dirs):
    for d in dirs:
        files = [f for f in glob.glob(d + "/*after_optimizations.txt")
                 if any(k in f for k in ("train_step", "chunk", "lambda"))]
        f = max(files, key=lambda p: len(open(p).read()))
        t = open(f).read()
        targets = collections.Counter(re.findall(r'custom_call_target="([^"]+)"', t))
        kinds = collections.Counter(re.findall(r'"kind":"([^"]+)"', t))
        print(d, f.split("/")[-1], "instructions", t.count(" = "), "fusions",
              t.count(" fusion("), "while loops", t.count(" while("))
        print("  custom-call targets", dict(targets.most_common(12)))
        print("  fusion kinds", dict(kinds.most_common(12)))


if __name__ == "__main__":
    main(sys.argv[1:])
