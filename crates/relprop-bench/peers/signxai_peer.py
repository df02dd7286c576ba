"""Time signxai's analyze() (TensorFlow, CPU) on VGG16 / ResNet50 for `cargo xtask bench --vs-signxai`.

Run by xtask in the golden generator's venv (.deps/venv-golden: signxai 1.1.9.2, TensorFlow 2.12.1). The models are
keras.applications' architectures with seeded random weights and no softmax (the same layer shapes as relprop's zoo;
Keras' ResNet50 is v1, the zoo's is v1.5: the stride sits on the first 1x1 instead of the 3x3 convolution, about 5%
more FLOPs for Keras). signxai cannot reuse an analyzer on models with BatchNorm, so every repetition builds a fresh
analyzer and only analyze() is timed. Prints one JSON object.
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

warnings.filterwarnings("ignore")
tf.get_logger().setLevel("ERROR")
from signxai.methods.innvestigate.analyzer.relevance_based import relevance_analyzer as RA  # noqa: E402

# relprop's benchmark label -> (signxai class, kwargs)
ANALYZERS = {
    "LRPEpsilon": ("LRPEpsilon", {"epsilon": 0.1}),
    "LRPAlpha1Beta0": ("LRPAlpha1Beta0", {}),
    "LRPSequentialCompositeB": ("LRPSequentialCompositeB", {}),
}


def build(name):
    tf.keras.utils.set_random_seed(0)
    if name == "vgg16":
        return tf.keras.applications.VGG16(weights=None, classifier_activation=None)
    if name == "resnet50":
        return tf.keras.applications.ResNet50(weights=None, classifier_activation=None)
    raise SystemExit(f"signxai_peer: unknown model {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="vgg16,resnet50")
    ap.add_argument("--analyzers", default=",".join(ANALYZERS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rows = []
    for mname in a.models.split(","):
        model = build(mname)
        x = np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
        for label in a.analyzers.split(","):
            cls, kw = ANALYZERS[label]
            times = []
            for _ in range(a.repeat + 1):  # the first run warms TensorFlow up and is dropped
                an = getattr(RA, cls)(model, **kw)
                t = time.perf_counter()
                an.analyze(x, neuron_selection="max_activation")
                times.append(time.perf_counter() - t)
            rows.append({"peer": "signxai", "model": mname, "analyzer": label, "batch": 1,
                         "seconds": statistics.median(times[1:]), "runs": a.repeat})
            print(f"signxai {mname} {label}: {rows[-1]['seconds']:.3f} s", file=sys.stderr)
    versions = {"signxai": "1.1.9.2", "tensorflow": tf.__version__, "python": sys.version.split()[0]}
    print(json.dumps({"rows": rows, "versions": versions, "threads": a.threads}))


if __name__ == "__main__":
    main()
