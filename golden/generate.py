#!/usr/bin/env python3
"""Rebuild relprop's golden data from the reference implementation: signxai 1.1.9.2 on TensorFlow 2.12.1 (CPU).

Nothing here ever reads relprop's output; every map comes from signxai. Run it through `cargo xtask golden`
(which creates the pinned virtual environment `.deps/venv-golden` from golden/requirements.txt), or by hand:

    python golden/generate.py --out DIR            # write a complete golden set into DIR (default: a temp dir)
    python golden/generate.py --install            # regenerate and update golden/ in place (see below)
    python golden/generate.py --out DIR --check golden   # regenerate into DIR, compare with golden/, report the worst
    python golden/generate.py --models mlp,strided ...   # only some models

Models:
* model_a, model_b: the shipped reference models. Their weights and input are the committed `model_{a,b}.h5` and
  `input_x.npy` (the reference run's recipe for them is not part of the project); every map, logit and ONNX export
  is recomputed from those. `--install` never rewrites their files: it only verifies them (within --tol).
* conv1d_bn, bn_residual, strided, maxpool_overlap, mlp: built here with fixed NumPy seeds; digits_cnn is trained
  here deterministically on scikit-learn's bundled digits (8x8) data set.
For every model and each of its inputs: every class-API configuration (CLASS_CONFIGS, the same as the shipped
manifest's) with neuron selection "max_activation" and the argmax index, and all 114 LRP method-name wrappers of
signxai.methods.wrappers. signxai failures are recorded as status "error" with the message.

Numerics: TensorFlow's oneDNN kernels are pinned on (TF_ENABLE_ONEDNN_OPTS=1, set below before TensorFlow is
imported); with them the shipped model_a/model_b maps are reproduced bit for bit. With TF_ENABLE_ONEDNN_OPTS=0
(Eigen kernels) they differ by up to 2e-6 relative. One intra-/inter-op thread is used everywhere.
"""
import os

# Pinned before TensorFlow is imported (it reads these at import time).
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

SHIPPED = ["model_a", "model_b"]
NEW = ["conv1d_bn", "bn_residual", "strided", "maxpool_overlap", "mlp", "digits_cnn", "keras_stem", "dense_branches",
       "depthwise", "merges", "cropping", "separable", "se_merges", "upsampling", "conv_transpose",
       "upsampling_bilinear", "dense_blocks", "convnext_block", "prelu"]
OPSET = 13
ONNX_TOL = 1e-5  # |ONNX Runtime - Keras| on the logits

# The class-API configurations of the shipped manifest: (record name, signxai class, params as JSON).
# In params, a list stands for a tuple (Bounded low/high), a string ending in "Rule" for the rule class of
# relevance_rule_base, and default_rule_configuration names an analyzer class.
CLASS_CONFIGS = [
    ("LRPZ", "LRPZ", {}),
    ("LRPZIgnoreBias", "LRPZIgnoreBias", {}),
    ("LRPEpsilon_default", "LRPEpsilon", {}),
    ("LRPEpsilon_0.1", "LRPEpsilon", {"epsilon": 0.1}),
    ("LRPEpsilon_1", "LRPEpsilon", {"epsilon": 1.0}),
    ("LRPEpsilonIgnoreBias_0.1", "LRPEpsilonIgnoreBias", {"epsilon": 0.1}),
    ("LRPStdxEpsilon_0.25", "LRPStdxEpsilon", {"stdfactor": 0.25}),
    ("LRPStdxEpsilon_1", "LRPStdxEpsilon", {"stdfactor": 1.0}),
    ("LRPWSquare", "LRPWSquare", {}),
    ("LRPFlat", "LRPFlat", {}),
    ("LRPAlphaBeta_3_2", "LRPAlphaBeta", {"alpha": 3, "beta": 2}),
    ("LRPAlphaBeta_3_2_nobias", "LRPAlphaBeta", {"alpha": 3, "beta": 2, "bias": False}),
    ("LRPAlpha2Beta1", "LRPAlpha2Beta1", {}),
    ("LRPAlpha2Beta1IgnoreBias", "LRPAlpha2Beta1IgnoreBias", {}),
    ("LRPAlpha1Beta0", "LRPAlpha1Beta0", {}),
    ("LRPAlpha1Beta0IgnoreBias", "LRPAlpha1Beta0IgnoreBias", {}),
    ("LRPZPlus", "LRPZPlus", {}),
    ("LRPZPlusFast", "LRPZPlusFast", {}),
    ("LRPGamma_0.5", "LRPGamma", {}),
    ("LRPGamma_0.25", "LRPGamma", {"gamma": 0.25}),
    ("LRPGamma_0.25_nobias", "LRPGamma", {"gamma": 0.25, "bias": False}),
    ("LRPSequentialCompositeA", "LRPSequentialCompositeA", {}),
    ("LRPSequentialCompositeB", "LRPSequentialCompositeB", {}),
    ("LRPSequentialCompositeAFlat", "LRPSequentialCompositeAFlat", {}),
    ("LRPSequentialCompositeBFlat", "LRPSequentialCompositeBFlat", {}),
    ("LRPRuleUntilIndex_default", "LRPRuleUntilIndex", {}),
    ("LRPRuleUntilIndex_idx3_Z_compA", "LRPRuleUntilIndex",
     {"until_layer_idx": 3, "until_index_rule": "ZRule", "default_rule_configuration": "LRPSequentialCompositeA"}),
    ("LRP_rule_Z", "LRP", {"rule": "Z"}),
    ("LRP_rule_Epsilon(default1e-7)", "LRP", {"rule": "Epsilon"}),
    ("LRP_rule_Bounded", "LRP", {"rule": "Bounded"}),
    ("LRP_Z_input_SIGN", "LRP", {"rule": "Z", "input_layer_rule": "SIGN"}),
    ("LRP_Z_input_SIGNmu", "LRP", {"rule": "Z", "input_layer_rule": "SIGNmu"}),
    ("LRP_Z_input_Bounded_tuple(-1,1)", "LRP", {"rule": "Z", "input_layer_rule": [-1.0, 1.0]}),
    ("LRP_Z_input_Bounded_tuple(-2,3)", "LRP", {"rule": "Z", "input_layer_rule": [-2.0, 3.0]}),
    ("LRP_Z_input_WSquare", "LRP", {"rule": "Z", "input_layer_rule": "WSquare"}),
    ("LRP_Z_input_Flat", "LRP", {"rule": "Z", "input_layer_rule": "Flat"}),
    ("LRPEpsilon_0.1_input_SIGN", "LRPEpsilon", {"epsilon": 0.1, "input_layer_rule": "SIGN"}),
    ("LRPEpsilon_0.1_input_Z", "LRPEpsilon", {"epsilon": 0.1, "input_layer_rule": "Z"}),
    ("LRP_rule_AlphaBetaX1000", "LRP", {"rule": "AlphaBetaX1000Rule"}),
    ("LRP_rule_AlphaBetaX2m100", "LRP", {"rule": "AlphaBetaX2m100Rule"}),
    ("LRP_rule_ZPlus", "LRP", {"rule": "ZPlus"}),
    ("LRP_rule_ZPlusFast", "LRP", {"rule": "ZPlusFast"}),
]


def until_configs(indices):
    """LRPRuleUntilIndex with Flat up to each index on top of composite B, for models whose layer indices are subtle."""
    return [(f"LRPRuleUntilIndex_idx{k}", "LRPRuleUntilIndex", {"until_layer_idx": k}) for k in indices]


# Extra class-API configurations per model (after CLASS_CONFIGS): layer indices where ZeroPadding counts
# (keras_stem), where residual branches of unequal depth must reach an input layer together (dense_branches),
# where tf2onnx's node names hide a layer (depthwise), where Dropout counts and branches merge (merges), and where
# Cropping counts while Permute/Reshape do not (cropping).
EXTRA_CONFIGS = {
    "keras_stem": until_configs(range(1, 9)),
    "dense_branches": until_configs(range(1, 6)),
    "depthwise": until_configs(range(1, 4)),
    "merges": until_configs(range(1, 6)),
    "cropping": until_configs(range(1, 4)),
    "separable": until_configs(range(1, 5)),
    "se_merges": until_configs(range(1, 4)),
    "upsampling": until_configs(range(1, 4)),
    "conv_transpose": until_configs(range(1, 4)),
    "upsampling_bilinear": until_configs(range(1, 4)),
    "dense_blocks": until_configs(range(1, 8)),
    "convnext_block": until_configs(range(1, 8)),
    "prelu": until_configs(range(1, 6)),
}
WRAPPER_PREFIXES = ("lrp_", "lrpsign_", "lrpz_", "w2lrp_", "flatlrp_", "zblrp_")
WRAPPER_API = "signxai.methods.wrappers"

# ---------------------------------------------------------------------------------------------- TensorFlow setup
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.experimental.enable_op_determinism()
tf.get_logger().setLevel("ERROR")
warnings.filterwarnings("ignore")
from tensorflow import keras  # noqa: E402
from tensorflow.keras import layers as L  # noqa: E402

import signxai.methods.wrappers as W  # noqa: E402
from signxai.methods.innvestigate.analyzer.relevance_based import relevance_analyzer as RA  # noqa: E402
from signxai.methods.innvestigate.analyzer.relevance_based import relevance_rule_base as RR  # noqa: E402

import keras2onnx_lrp  # noqa: E402  (tools/keras2onnx_lrp.py)


def log(*a):
    print(*a, flush=True)


def wrapper_names():
    names = [n for n in dir(W) if n.startswith(WRAPPER_PREFIXES) and callable(getattr(W, n))]
    if len(names) != 114:
        raise RuntimeError(f"expected the 114 LRP method names of signxai 1.1.9.2, found {len(names)}")
    return names


def class_params(params):
    out = {}
    for k, v in params.items():
        if isinstance(v, list):
            v = tuple(v)
        elif isinstance(v, str) and v.endswith("Rule") and hasattr(RR, v):
            v = getattr(RR, v)
        elif k == "default_rule_configuration":
            v = getattr(RA, v)
        out[k] = v
    return out


# ---------------------------------------------------------------------------------------------- models
def randomize(model, rng):
    """Deterministic weights from NumPy: He-uniform kernels, small random biases, random BN statistics."""
    for layer in model.layers:
        if not layer.weights:
            continue
        new = []
        for w in layer.weights:
            n = w.name.split("/")[-1].split(":")[0]
            shape = tuple(w.shape)
            if n in ("kernel", "depthwise_kernel", "pointwise_kernel"):
                # a depthwise kernel (kh, kw, C, multiplier) sees one channel: fan-in kh*kw
                fan_in = int(np.prod(shape[:-2] if n == "depthwise_kernel" else shape[:-1]))
                lim = np.sqrt(6.0 / fan_in)
                v = rng.uniform(-lim, lim, shape)
            elif n == "bias":
                v = rng.uniform(-0.1, 0.1, shape)
            elif n == "gamma":
                v = rng.uniform(0.5, 1.5, shape)
            elif n in ("beta", "moving_mean"):
                v = rng.uniform(-0.2, 0.2, shape)
            elif n == "moving_variance":
                v = rng.uniform(0.5, 1.5, shape)
            elif n == "alpha":  # PReLU slopes, some negative
                v = rng.uniform(-0.3, 0.6, shape)
            else:
                raise ValueError(f"unexpected weight {w.name}")
            new.append(v.astype(np.float32))
        layer.set_weights(new)


def with_zeros(x, rng, frac=0.2):
    """A copy of x with round(frac * size) entries set to exactly 0."""
    x = x.copy()
    flat = x.reshape(-1)
    k = int(round(frac * flat.size))
    flat[rng.choice(flat.size, size=k, replace=False)] = 0.0
    return x


def uniform_inputs(shape, rng):
    x0 = rng.uniform(-1, 1, (1,) + shape).astype(np.float32)
    x1 = with_zeros(rng.uniform(-1, 1, (1,) + shape).astype(np.float32), rng)
    return [x0, x1]


def build_conv1d_bn():
    rng = np.random.default_rng(101)
    i = keras.Input((64, 2), name="input")
    h = L.Conv1D(4, 7, padding="same", name="c1")(i)
    h = L.BatchNormalization(epsilon=1e-3, name="bn1")(h)
    h = L.ReLU(name="relu1")(h)
    h = L.MaxPooling1D(2, name="pool1")(h)
    h = L.Conv1D(6, 5, strides=2, padding="valid", activation="relu", name="c2")(h)
    h = L.AveragePooling1D(2, name="pool2")(h)
    h = L.Flatten(name="flatten")(h)
    h = L.Dense(8, activation="relu", name="dense1")(h)
    o = L.Dense(3, name="logits")(h)
    m = keras.Model(i, o, name="conv1d_bn")
    randomize(m, rng)
    # an ECG-like 2-lead signal: a periodic spike train on a slow baseline wander, plus noise
    t = np.arange(64) / 64.0
    beat = sum(np.exp(-((t - c) ** 2) / (2 * 0.012 ** 2)) for c in (0.1, 0.35, 0.6, 0.85))
    lead1 = 0.8 * beat - 0.25 * np.sin(2 * np.pi * 4 * t - 0.5) + 0.1 * np.sin(2 * np.pi * t)
    lead2 = -0.5 * beat + 0.3 * np.sin(2 * np.pi * 4 * t + 0.3) - 0.1 * np.cos(2 * np.pi * t)
    x0 = np.stack([lead1, lead2], axis=-1)[None] + 0.05 * rng.standard_normal((1, 64, 2))
    x0 = x0.astype(np.float32)
    x1 = with_zeros(rng.uniform(-1, 1, (1, 64, 2)).astype(np.float32), rng)
    return m, [x0, x1], {"description": "Conv1D(same) -> BN -> ReLU -> MaxPool1D(2) -> Conv1D(stride 2, valid, relu) "
                                        "-> AvgPool1D(2) -> Flatten -> Dense(relu) -> Dense; input 0 is an "
                                        "ECG-like 2-lead signal, input 1 uniform(-1,1) with 20% zeros"}


def build_bn_residual():
    rng = np.random.default_rng(102)
    i = keras.Input((8, 8, 3), name="input")
    c0 = L.Conv2D(4, 3, padding="same", activation="relu", name="c0")(i)
    c1 = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(c0)
    c2 = L.Conv2D(4, 3, padding="same", name="c2")(c1)
    bn = L.BatchNormalization(epsilon=1e-3, name="bn")(c2)
    h = L.Add(name="add")([c1, bn])
    h = L.ReLU(name="relu")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    h = L.Dense(8, activation="relu", name="d1")(h)
    o = L.Dense(5, name="logits")(h)
    m = keras.Model(i, o, name="bn_residual")
    randomize(m, rng)
    # (the residual branches after c1, not after the first conv: signxai's SIGN/Bounded input rules crash when the
    # first layer's output has two consumers, which would leave those rules untested here)
    return m, uniform_inputs((8, 8, 3), rng), {
        "description": "Conv(relu) c0 -> Conv(relu) c1 -> Conv c2 -> BN directly after the conv -> Add(c1, bn) -> "
                       "ReLU -> GAP -> Dense(relu) -> Dense"}


def build_strided():
    rng = np.random.default_rng(103)
    i = keras.Input((9, 7, 3), name="input")
    h = L.Conv2D(4, 3, strides=2, padding="valid", activation="relu", name="s2_valid")(i)      # 4x3
    h = L.Conv2D(6, 2, padding="same", activation="relu", name="even_same")(h)                 # 4x3, pad bottom/right
    h = L.Conv2D(5, (3, 2), strides=2, padding="same", name="s2_same")(h)                      # 2x2, pad bottom/right
    h = L.ReLU(name="relu")(h)
    h = L.Flatten(name="flatten")(h)
    o = L.Dense(5, name="logits")(h)
    m = keras.Model(i, o, name="strided")
    randomize(m, rng)
    return m, uniform_inputs((9, 7, 3), rng), {
        "description": "non-square 9x7x3 input; Conv 3x3 stride 2 valid -> Conv 2x2 'same' (even kernel: TF pads "
                       "bottom/right) -> Conv 3x2 stride 2 'same' (asymmetric padding) -> ReLU -> Flatten -> Dense"}


def build_maxpool_overlap():
    rng = np.random.default_rng(104)
    i = keras.Input((9, 9, 3), name="input")
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(i)
    h = L.MaxPooling2D(3, strides=2, padding="valid", name="pool1")(h)                        # 4x4, overlapping
    h = L.Conv2D(6, 3, padding="same", activation="relu", name="c2")(h)
    h = L.MaxPooling2D(3, strides=2, padding="same", name="pool2")(h)                         # 2x2, overlapping, padded
    h = L.Flatten(name="flatten")(h)
    o = L.Dense(5, name="logits")(h)
    m = keras.Model(i, o, name="maxpool_overlap")
    randomize(m, rng)
    return m, uniform_inputs((9, 9, 3), rng), {
        "description": "Conv(relu) -> MaxPool 3x3 stride 2 valid (overlapping) -> Conv(relu) -> MaxPool 3x3 stride 2 "
                       "'same' (overlapping, padded bottom/right) -> Flatten -> Dense"}


def build_mlp():
    rng = np.random.default_rng(105)
    i = keras.Input((10,), name="input")
    h = L.Dense(16, activation="relu", name="d1")(i)
    h = L.Dense(8, activation="relu", name="d2")(h)
    o = L.Dense(4, name="logits")(h)
    m = keras.Model(i, o, name="mlp")
    randomize(m, rng)
    return m, uniform_inputs((10,), rng), {"description": "Dense(16, relu) -> Dense(8, relu) -> Dense(4) on a (10,) input"}


def build_digits_cnn():
    """A small CNN trained deterministically (CPU, op determinism, fixed seeds, own shuffling) on sklearn digits."""
    from sklearn.datasets import load_digits
    d = load_digits()
    X = (d.images.astype(np.float32) / 16.0)[..., None]  # (1797, 8, 8, 1) in [0, 1]
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(106)
    perm = rng.permutation(len(X))
    test_idx, train_idx = perm[:297], perm[297:]
    tf.keras.utils.set_random_seed(106)  # op determinism is enabled globally above
    i = keras.Input((8, 8, 1), name="input")
    h = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(i)
    h = L.MaxPooling2D(2, name="pool")(h)
    h = L.Conv2D(16, 3, padding="same", activation="relu", name="c2")(h)
    h = L.Flatten(name="flatten")(h)
    h = L.Dense(32, activation="relu", name="d1")(h)
    o = L.Dense(10, name="logits")(h)
    m = keras.Model(i, o, name="digits_cnn")
    randomize(m, rng)
    m.compile(optimizer=keras.optimizers.Adam(learning_rate=3e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    Xtr, ytr = X[train_idx], y[train_idx]
    epochs = 12
    for _ in range(epochs):
        p = rng.permutation(len(Xtr))
        m.fit(Xtr[p], ytr[p], batch_size=32, epochs=1, shuffle=False, verbose=0)
    _, acc = m.evaluate(X[test_idx], y[test_idx], verbose=0)
    # two held-out digits: a "1" and a "0" (both have many exact zeros, as digits do)
    picks = []
    for digit in (1, 0):
        j = next(int(k) for k in test_idx if y[k] == digit)
        picks.append(j)
    xs = [X[j][None].copy() for j in picks]
    return m, xs, {"description": "Conv(8, relu) -> MaxPool2 -> Conv(16, relu) -> Flatten -> Dense(32, relu) -> "
                                  "Dense(10); trained here on sklearn.datasets.load_digits (8x8 scaled to [0,1]), "
                                  f"{epochs} epochs Adam(3e-3) batch 32, 1500 training / 297 held-out images",
                   "training": {"data": "sklearn.datasets.load_digits", "train": len(train_idx), "test": len(test_idx),
                                "epochs": epochs, "optimizer": "Adam(learning_rate=3e-3)", "batch_size": 32,
                                "test_accuracy": round(float(acc), 4)},
                   "input_labels": [int(y[j]) for j in picks], "input_dataset_index": picks}


def build_keras_stem():
    rng = np.random.default_rng(107)
    i = keras.Input((16, 16, 3), name="input")
    h = L.ZeroPadding2D(3, name="pad1")(i)
    h = L.Conv2D(4, 7, strides=2, name="c1")(h)                                                # 8x8
    h = L.BatchNormalization(epsilon=1e-3, name="bn1")(h)
    h = L.ReLU(name="relu1")(h)
    h = L.ZeroPadding2D(1, name="pad2")(h)
    s = L.MaxPooling2D(3, strides=2, name="pool")(h)                                            # 4x4
    h = L.Conv2D(4, 3, padding="same", name="c2")(s)
    h = L.BatchNormalization(epsilon=1e-3, name="bn2")(h)
    h = L.ReLU(name="relu2")(h)
    h = L.Conv2D(4, 3, padding="same", name="c3")(h)
    h = L.BatchNormalization(epsilon=1e-3, name="bn3")(h)
    h = L.Add(name="add")([h, s])
    h = L.ReLU(name="relu3")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    o = L.Dense(5, name="logits")(h)
    m = keras.Model(i, o, name="keras_stem")
    randomize(m, rng)
    return m, uniform_inputs((16, 16, 3), rng), {
        "description": "Keras ResNet50's stem and first block, small: ZeroPadding(3) -> Conv 7x7 stride 2 -> BN -> ReLU "
                       "-> ZeroPadding(1) -> MaxPool 3x3 stride 2 -> [Conv-BN-ReLU-Conv-BN] + identity -> ReLU -> GAP "
                       "-> Dense. ZeroPadding is a layer of its own for until_layer_idx and for the input layer's "
                       "W2/Flat/StdxEpsilon rules"}


def build_dense_branches():
    rng = np.random.default_rng(108)
    i = keras.Input((10,), name="input")
    h = L.Dense(8, activation="relu", name="d1")(i)
    b = L.Dense(8, name="d2")(h)
    h = L.Add(name="add")([b, h])
    h = L.ReLU(name="relu")(h)
    h = L.Dense(6, activation="relu", name="d3")(h)
    o = L.Dense(4, name="logits")(h)
    m = keras.Model(i, o, name="dense_branches")
    randomize(m, rng)
    return m, uniform_inputs((10,), rng), {
        "description": "Dense(relu) d1 -> Add(Dense d2, identity) -> ReLU -> Dense(relu) -> Dense: a residual branch "
                       "of unequal depth, where signxai's until_layer_idx walk needs both paths to reach an input "
                       "layer together"}


def build_depthwise():
    rng = np.random.default_rng(109)
    i = keras.Input((8, 8, 3), name="input")
    h = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu", name="dw")(i)
    h = L.Conv2D(4, 1, name="pw")(h)
    h = L.ReLU(name="relu")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    o = L.Dense(3, name="logits")(h)
    m = keras.Model(i, o, name="depthwise")
    randomize(m, rng)
    return m, uniform_inputs((8, 8, 3), rng), {
        "description": "DepthwiseConv2D 3x3 (multiplier 2, relu) -> Conv 1x1 -> ReLU -> GAP -> Dense (tf2onnx names "
                       "the depthwise conv node Conv__N, without its layer)"}


def build_merges():
    rng = np.random.default_rng(110)
    i = keras.Input((10,), name="input")
    h = L.Dense(8, activation="relu", name="d1")(i)
    h = L.Dropout(0.3, name="drop")(h)
    a = L.Average(name="avg")([L.Dense(6, name="da")(h), L.Dense(6, name="db")(h)])
    a = L.ReLU(name="relu")(a)
    c = L.Dense(4, activation="tanh", name="dc")(h)
    h = L.Concatenate(name="cat")([a, c])
    o = L.Dense(4, name="logits")(h)
    m = keras.Model(i, o, name="merges")
    randomize(m, rng)
    return m, uniform_inputs((10,), rng), {
        "description": "Dense(relu) -> Dropout -> Average(Dense, Dense) -> ReLU, Concatenate with Dense(tanh) -> Dense: "
                       "Average routes relevance by the gradient (not the Add rule), Concatenate splits it, Dropout "
                       "counts as a layer for until_layer_idx (tf2onnx drops it; keras2onnx_lrp writes an Identity)"}


def build_cropping():
    rng = np.random.default_rng(111)
    i = keras.Input((8, 6, 2), name="input")
    h = L.Cropping2D(((1, 0), (0, 1)), name="crop")(i)                                         # 7x5
    h = L.Conv2D(3, 3, activation="relu", name="c")(h)                                          # 5x3
    h = L.Permute((2, 1, 3), name="perm")(h)
    h = L.Reshape((5, 9), name="reshape")(h)
    h = L.Flatten(name="flatten")(h)
    o = L.Dense(3, name="logits")(h)
    m = keras.Model(i, o, name="cropping")
    randomize(m, rng)
    return m, uniform_inputs((8, 6, 2), rng), {
        "description": "Cropping2D (asymmetric) -> Conv(relu) -> Permute -> Reshape -> Flatten -> Dense: ONNX Slice, "
                       "and layers signxai's layer walks count (Cropping) or look through (Permute, Reshape)"}


def build_separable():
    rng = np.random.default_rng(112)
    i = keras.Input((8, 8, 3), name="input")
    h = L.SeparableConv2D(4, 3, padding="same", activation="relu", name="sep1")(i)
    h = L.SeparableConv2D(6, 3, strides=2, depth_multiplier=2, use_bias=False, name="sep2")(h)  # 3x3
    h = L.BatchNormalization(name="bn")(h)
    h = L.ReLU(name="relu")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    o = L.Dense(3, name="logits")(h)
    m = keras.Model(i, o, name="separable")
    randomize(m, rng)
    return m, uniform_inputs((8, 8, 3), rng), {
        "description": "SeparableConv2D(relu) -> SeparableConv2D (multiplier 2, stride 2, valid, no bias) -> BN -> "
                       "ReLU -> GAP -> Dense: signxai explains each SeparableConv as one kernel (every rule "
                       "substitutes its depthwise and pointwise weights); tf2onnx writes it as two Convs"}


def build_se_merges():
    rng = np.random.default_rng(113)
    i = keras.Input((8, 8, 3), name="input")
    c = L.Conv2D(6, 3, padding="same", activation="swish", name="c")(i)
    e = L.GlobalAveragePooling2D(name="sq")(c)
    e = L.Reshape((1, 1, 6), name="rs")(e)
    e = L.Conv2D(3, 1, activation="relu", name="red")(e)
    e = L.Conv2D(6, 1, activation="sigmoid", name="exc")(e)
    h = L.Multiply(name="scale")([c, e])                       # (8, 8, 6) times a (1, 1, 6) gate
    h = L.Activation("swish", name="act")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    a = L.Dense(8, activation="relu", name="da")(h)
    b = L.Dense(8, name="db")(h)
    h = L.Minimum(name="min")([L.Maximum(name="max")([a, b]), L.Subtract(name="sub")([a, b])])
    o = L.Dense(3, name="logits")(h)
    m = keras.Model(i, o, name="se_merges")
    randomize(m, rng)
    return m, uniform_inputs((8, 8, 3), rng), {
        "description": "Conv(swish) -> squeeze-and-excitation (GAP, Reshape, Conv relu, Conv sigmoid, Multiply with "
                       "the (1, 1, C) gate broadcast) -> Activation(swish) -> GAP -> Dense(relu) a, Dense b -> "
                       "Minimum(Maximum(a, b), Subtract(a, b)) -> Dense: merges signxai routes by the gradient, "
                       "swish as x*sigmoid(x)"}


def build_upsampling():
    rng = np.random.default_rng(114)
    i = keras.Input((6, 5, 3), name="input")
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="c")(i)
    h = L.UpSampling2D((2, 3), name="up")(h)                                                   # 12x15
    h = L.Conv2D(5, 3, strides=2, activation="relu", name="c2")(h)                              # 5x7
    h = L.MaxPooling2D(2, name="mp")(h)                                                          # 2x3
    h = L.Flatten(name="flatten")(h)
    o = L.Dense(3, name="logits")(h)
    m = keras.Model(i, o, name="upsampling")
    randomize(m, rng)
    return m, uniform_inputs((6, 5, 3), rng), {
        "description": "Conv(relu) -> UpSampling2D((2, 3)) -> Conv stride 2 (relu) -> MaxPool -> Flatten -> Dense: "
                       "nearest upsampling (ONNX Resize), which signxai routes by the gradient (each input gets the "
                       "sum of its block) and counts as a layer"}


def build_conv_transpose():
    rng = np.random.default_rng(115)
    i = keras.Input((5, 6, 3), name="input")
    h = L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu", name="ct")(i)      # 10x12
    h = L.Conv2DTranspose(2, (2, 3), strides=(1, 2), name="ct2")(h)                                # 11x25
    h = L.Flatten(name="flatten")(h)
    o = L.Dense(3, name="logits")(h)
    m = keras.Model(i, o, name="conv_transpose")
    randomize(m, rng)
    return m, uniform_inputs((5, 6, 3), rng), {
        "description": "Conv2DTranspose 3x3 stride 2 same (relu) -> Conv2DTranspose (2, 3) stride (1, 2) valid -> "
                       "Flatten -> Dense: transposed convolutions, which signxai explains as conv layers"}


def build_upsampling_bilinear():
    rng = np.random.default_rng(116)
    i = keras.Input((6, 5, 3), name="input")
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="c")(i)
    h = L.UpSampling2D((2, 3), interpolation="bilinear", name="up")(h)                          # 12x15
    h = L.Conv2D(5, 3, strides=2, activation="relu", name="c2")(h)                              # 5x7
    h = L.GlobalAveragePooling2D(name="gap")(h)
    o = L.Dense(3, name="logits")(h)
    m = keras.Model(i, o, name="upsampling_bilinear")
    randomize(m, rng)
    return m, uniform_inputs((6, 5, 3), rng), {
        "description": "Conv(relu) -> UpSampling2D((2, 3), bilinear) -> Conv stride 2 (relu) -> GAP -> Dense: linear "
                       "upsampling with half-pixel centres (ONNX Resize linear), which signxai routes by the "
                       "gradient (the transposed interpolation)"}


def build_dense_blocks():
    rng = np.random.default_rng(117)
    i = keras.Input((8, 8, 3), name="input")
    h = L.Rescaling(0.5, offset=-0.1, name="rescale")(i)
    h = L.Normalization(axis=-1, mean=[0.1, -0.2, 0.05], variance=[1.5, 0.8, 1.2], name="norm")(h)
    h = L.Conv2D(6, 3, padding="same", use_bias=False, name="stem")(h)
    h = L.BatchNormalization(epsilon=1e-3, name="stem_bn")(h)
    h = L.ReLU(name="stem_relu")(h)
    for b in (1, 2):                                                     # DenseNet blocks: concat([x, f(x)])
        y = L.BatchNormalization(epsilon=1e-3, name=f"b{b}_bn")(h)
        y = L.ReLU(name=f"b{b}_relu")(y)
        y = L.Conv2D(3, 3, padding="same", use_bias=False, name=f"b{b}_conv")(y)
        h = L.Concatenate(name=f"b{b}_concat")([h, y])
    h = L.AveragePooling2D(2, name="pool")(h)                                                 # 4x4x12
    a = L.Conv2D(4, 1, activation="relu", name="a")(h)
    c = L.Conv2D(4, 1, activation="relu", name="c1")(h)
    c = L.Conv2D(4, 1, activation="relu", name="c2")(c)
    h = L.Subtract(name="sub")([a, c])                                   # c's branch is deeper: it arrives first
    h = L.GlobalAveragePooling2D(name="gap")(h)
    o = L.Dense(3, name="logits")(h)
    m = keras.Model(i, o, name="dense_blocks")
    randomize(m, rng)
    return m, uniform_inputs((8, 8, 3), rng), {
        "description": "Rescaling(0.5, offset -0.1) -> Normalization -> Conv -> BN -> ReLU -> two DenseNet blocks "
                       "(BN -> ReLU -> Conv, Concatenate([x, f(x)])) -> AvgPool -> Subtract(a, c) of a 1-layer and "
                       "a 2-layer branch -> GAP -> Dense. signxai applies the Concatenates and the Subtract to their "
                       "inputs in the order its forward walk delivers them ([f(x), x]; c - a), and passes relevance "
                       "through Rescaling and Normalization unchanged"}


def build_convnext_block():
    rng = np.random.default_rng(118)
    i = keras.Input((8, 8, 3), name="input")
    h = L.Conv2D(6, 2, strides=2, name="stem")(i)                                              # 4x4x6
    h = L.LayerNormalization(epsilon=1e-6, name="stem_ln")(h)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(h)
    y = L.LayerNormalization(epsilon=1e-6, name="ln")(y)
    y = L.Dense(12, name="pw1")(y)                                                              # Dense on rank 4
    y = L.Activation("gelu", name="gelu")(y)
    y = L.Dense(6, name="pw2")(y)
    h = L.Add(name="add")([h, y])
    h = L.GlobalAveragePooling2D(name="gap")(h)
    h = L.LayerNormalization(epsilon=1e-6, name="head_ln")(h)
    h = L.Dense(8, activation="gelu", name="fc")(h)
    o = L.Dense(3, name="logits")(h)
    m = keras.Model(i, o, name="convnext_block")
    randomize(m, rng)
    return m, uniform_inputs((8, 8, 3), rng), {
        "description": "Conv 2x2 stride 2 -> LayerNorm -> a ConvNeXt block (DepthwiseConv 3x3 -> LayerNorm -> Dense "
                       "on the rank-4 tensor -> GELU -> Dense, residual Add) -> GAP -> LayerNorm -> Dense(gelu) -> "
                       "Dense: signxai passes relevance through LayerNormalization and a standalone GELU unchanged "
                       "and applies its rules to Dense layers on every position"}


def build_prelu():
    rng = np.random.default_rng(119)
    i = keras.Input((7, 7, 3), name="input")
    h = L.Conv2D(5, 3, padding="same", name="c1")(i)
    h = L.PReLU(shared_axes=[1, 2], name="pr1")(h)                                              # one slope per channel
    h = L.Conv2D(4, 3, strides=2, name="c2")(h)                                                 # 3x3x4
    h = L.PReLU(name="pr2")(h)                                                                  # one slope per value
    h = L.Flatten(name="flatten")(h)
    h = L.Dense(6, name="d")(h)
    h = L.PReLU(name="pr3")(h)
    o = L.Dense(3, name="logits")(h)
    m = keras.Model(i, o, name="prelu")
    randomize(m, rng)
    return m, uniform_inputs((7, 7, 3), rng), {
        "description": "Conv -> PReLU (slope per channel) -> Conv stride 2 -> PReLU (slope per value) -> Flatten -> "
                       "Dense -> PReLU -> Dense: PReLU (tf2onnx: Relu(x) + Mul(Relu(-x), -alpha)), which signxai "
                       "passes relevance through unchanged"}


BUILDERS = {
    "conv1d_bn": build_conv1d_bn,
    "bn_residual": build_bn_residual,
    "strided": build_strided,
    "maxpool_overlap": build_maxpool_overlap,
    "mlp": build_mlp,
    "digits_cnn": build_digits_cnn,
    "keras_stem": build_keras_stem,
    "dense_branches": build_dense_branches,
    "depthwise": build_depthwise,
    "merges": build_merges,
    "cropping": build_cropping,
    "separable": build_separable,
    "se_merges": build_se_merges,
    "upsampling": build_upsampling,
    "conv_transpose": build_conv_transpose,
    "upsampling_bilinear": build_upsampling_bilinear,
    "dense_blocks": build_dense_blocks,
    "convnext_block": build_convnext_block,
    "prelu": build_prelu,
}

LAYER_KEYS = ["activation", "padding", "strides", "kernel_size", "pool_size", "use_bias", "data_format",
              "epsilon", "axis", "center", "scale"]


def describe_layers(model, mname):
    out = []
    for layer in model.layers:
        cfg = layer.get_config()
        d = {"layer": layer.name, "class": layer.__class__.__name__, "weights": []}
        for w in layer.weights:
            n = w.name.split("/")[-1].split(":")[0]
            d["weights"].append({"name": n, "file": f"{mname}__{layer.name}__{n}.npy", "shape": list(w.shape)})
        for k in LAYER_KEYS:
            if k in cfg:
                v = cfg[k]
                d[k] = list(v) if isinstance(v, tuple) else v
        out.append(d)
    return out


def summary(model):
    s = []
    for layer in model.layers:
        shp = layer.output_shape
        s.append(f"{layer.name}:{layer.__class__.__name__}:{shp}")
    return s


# ---------------------------------------------------------------------------------------------- running signxai
def file_stem(name):
    """A record name as used in file names (as in the shipped set: '(', ')' and ',' become '_')."""
    import re
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


def run_model(model, mname, inputs, input_files, out, shipped):
    with warnings.catch_warnings():
        # signxai warns "LRP is only tested for convolutional neural networks" and re-enables warnings itself
        # (simplefilter("always") in reverse_map.py), so silence the display instead of the filter
        warnings.simplefilter("ignore")
        warnings.showwarning = lambda *a, **k: None
        return _run_model(model, mname, inputs, input_files, out, shipped)


def _run_model(model, mname, inputs, input_files, out, shipped):
    """All class configs (max + idx) and all wrappers for every input; writes maps, returns records."""
    records = []
    logits = [model(x, training=False).numpy() for x in inputs]
    for k, (x, xfile) in enumerate(zip(inputs, input_files)):
        lg = logits[k][0]
        idx = int(np.argmax(lg))
        prefix = mname if shipped else f"{mname}__in{k}"
        for name, cls, params in CLASS_CONFIGS + EXTRA_CONFIGS.get(mname, []):
            for sel, tag in (("max_activation", "max"), (idx, "idx")):
                rec = {"model": mname, "analyzer": name, "class": cls, "params": params, "neuron_selection": sel,
                       "api": "class"}
                try:
                    an = getattr(RA, cls)(model, **class_params(params))
                    res = an.analyze(x, neuron_selection=sel)
                    layer = list(res.keys())[0]
                    r = np.asarray(res[layer])
                    fname = f"{prefix}__{file_stem(name)}__{tag}.npy"
                    np.save(os.path.join(out, fname), r)
                    rec.update({"file": fname, "explained_layer": layer, "shape": list(r.shape),
                                "sum_R": float(r.sum()), "logit_selected": float(lg[idx]),
                                "max_abs_R": float(np.abs(r).max()), "status": "ok"})
                except Exception as e:  # signxai's own failure: recorded, like the shipped manifest
                    rec.update({"status": "error", "error": f"{type(e).__name__}: {e}"})
                rec["input"] = xfile
                records.append(rec)
        for name in wrapper_names():
            rec = {"model": mname, "analyzer": name, "api": WRAPPER_API,
                   "neuron_selection": "max_activation (wrapper default)"}
            try:
                r = np.asarray(getattr(W, name)(model, x[0]))
                fname = f"{prefix}__wrapper__{file_stem(name)}.npy"
                np.save(os.path.join(out, fname), r)
                rec.update({"file": fname, "shape": list(r.shape), "sum_R": float(r.sum()),
                            "logit_selected": float(lg[idx]), "status": "ok"})
            except Exception as e:
                rec.update({"status": "error", "error": f"{type(e).__name__}: {e}"})
            rec["input"] = xfile
            records.append(rec)
    return records, logits


def versions():
    import onnx, onnxruntime, tf2onnx, sklearn, platform
    return {"signxai": "1.1.9.2", "tensorflow": tf.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "scikit-learn": sklearn.__version__}


def generate(out, models, golden=HERE, reuse_trained=()):
    """Write the golden set for `models` into `out` (maps, inputs, weights, logits, .h5, ONNX, manifest.json)."""
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    ref = json.load(open(os.path.join(golden, "manifest.json")))
    v = versions()
    manifest = {k: ref[k] for k in ("signxai", "tensorflow", "numpy", "python", "layout")}
    manifest["generator"] = {"script": "golden/generate.py", "TF_ENABLE_ONEDNN_OPTS": "1", "threads": 1,
                             "onnx_export": "tools/keras2onnx_lrp.py", "opset": OPSET, "versions": v}
    manifest["models"], manifest["results"] = {}, []
    timings = {}
    for mname in models:
        t0 = time.time()
        keras.backend.clear_session()
        if mname in SHIPPED:
            model = keras.models.load_model(os.path.join(golden, f"{mname}.h5"), compile=False)
            inputs = [np.load(os.path.join(golden, "input_x.npy"))]
            input_files = ["input_x.npy"]
            shutil.copy(os.path.join(golden, f"{mname}.h5"), os.path.join(out, f"{mname}.h5"))
            if not os.path.exists(os.path.join(out, "input_x.npy")):
                shutil.copy(os.path.join(golden, "input_x.npy"), os.path.join(out, "input_x.npy"))
            entry = copy.deepcopy(ref["models"][mname])
            onnx_file = f"onnx/{mname}_opset{OPSET}.onnx"
            extra = {}
        else:
            built, inputs, extra = BUILDERS[mname]()
            if mname in reuse_trained:
                # training is bitwise reproducible only on the same CPU kind (oneDNN picks kernels by ISA):
                # optionally explain the committed trained weights instead, so the maps can still be checked
                built.load_weights(os.path.join(golden, f"{mname}.h5"))
                extra["weights_from"] = f"committed {mname}.h5 (--reuse-trained)"
            built.save(os.path.join(out, f"{mname}.h5"))
            keras.backend.clear_session()
            model = keras.models.load_model(os.path.join(out, f"{mname}.h5"), compile=False)
            input_files = [f"{mname}__input{k}.npy" for k in range(len(inputs))]
            for x, f in zip(inputs, input_files):
                np.save(os.path.join(out, f), x)
            for layer in model.layers:
                for w in layer.weights:
                    n = w.name.split("/")[-1].split(":")[0]
                    np.save(os.path.join(out, f"{mname}__{layer.name}__{n}.npy"), w.numpy())
            onnx_file = f"onnx/{mname}.onnx"
            entry = {"layers": describe_layers(model, mname)}
        log(f"[{mname}] exporting ONNX -> {onnx_file}")
        proto, method, worst = keras2onnx_lrp.export(model, os.path.join(out, onnx_file), opset=OPSET, tol=ONNX_TOL,
                                                     check_inputs=inputs)
        log(f"[{mname}]   {method} export, max |ORT - Keras| = {worst:.2e}")
        records, logits = run_model(model, mname, inputs, input_files, out, shipped=mname in SHIPPED)
        if mname in SHIPPED:
            np.save(os.path.join(out, f"{mname}__logits.npy"), logits[0])
            for layer in model.layers:
                for w in layer.weights:
                    n = w.name.split("/")[-1].split(":")[0]
                    np.save(os.path.join(out, f"{mname}__{layer.name}__{n}.npy"), w.numpy())
            entry["onnx"] = onnx_file
            entry["inputs"] = input_files
        else:
            lg = np.concatenate(logits, axis=0)
            np.save(os.path.join(out, f"{mname}__logits.npy"), lg)
            entry.update({"logits": lg.tolist(), "argmax": [int(np.argmax(r)) for r in lg], "h5": f"{mname}.h5",
                          "summary": summary(model), "onnx": onnx_file, "inputs": input_files,
                          "input_shape": list(inputs[0].shape), "onnx_export": method,
                          "onnx_max_abs_diff": float(worst)})
            entry.update(extra)
        manifest["models"][mname] = entry
        manifest["results"].extend(records)
        timings[mname] = round(time.time() - t0, 1)
        n_ok = sum(r["status"] == "ok" for r in records)
        log(f"[{mname}] {len(records)} records ({n_ok} ok, {len(records) - n_ok} signxai errors) in {timings[mname]} s")
    log("seconds per model: " + json.dumps(timings))  # (not in the manifest: it would change on every run)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


# ---------------------------------------------------------------------------------------------- comparison
def rel_diff(a, b):
    """max|a - b| / max(max|b|, 1e-6) (the floor keeps signxai's Bounded maps, which are ~1e-13, meaningful)."""
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() / max(float(np.abs(b).max()), 1e-6))


def _norm(msg):
    """An error message without object addresses (they change from run to run)."""
    import re
    return None if msg is None else re.sub(r"0x[0-9a-fA-F]+", "0x?", msg)


def rec_key(r):
    return (r["model"], r.get("input", "input_x.npy"), r["api"], r["analyzer"], str(r["neuron_selection"]))


def compare(new_dir, ref_dir, models, tol):
    """Compare a regenerated set with a committed one; returns (worst, n_compared, problems)."""
    import onnxruntime as ort
    newm = json.load(open(os.path.join(new_dir, "manifest.json")))
    refm = json.load(open(os.path.join(ref_dir, "manifest.json")))
    problems, worst, n = [], (0.0, "-"), 0

    def upd(d, what):
        nonlocal worst, n
        n += 1
        if d > worst[0]:
            worst = (d, what)
        if not d <= tol:
            problems.append(f"{what}: relative difference {d:.3e}")

    missing = [m for m in models if m not in refm["models"]]
    for m in missing:
        problems.append(f"{m}: not in the committed manifest (install it with --install)")
    models = [m for m in models if m not in missing]
    newr = {rec_key(r): r for r in newm["results"] if r["model"] in models}
    refr = {rec_key(r): r for r in refm["results"] if r["model"] in models}
    for k in sorted(set(newr) | set(refr)):
        if k not in refr:
            problems.append(f"{k}: regenerated but not committed")
            continue
        if k not in newr:
            problems.append(f"{k}: committed but not regenerated")
            continue
        a, b = newr[k], refr[k]
        if a["status"] != b["status"] or _norm(a.get("error")) != _norm(b.get("error")):
            problems.append(f"{k}: status {a['status']} {a.get('error', '')!r} vs committed {b['status']} "
                            f"{b.get('error', '')!r}")
            continue
        if b["status"] != "ok":
            continue
        if a["file"] != b["file"]:
            problems.append(f"{k}: file {a['file']} vs {b['file']}")
            continue
        upd(rel_diff(np.load(os.path.join(new_dir, a["file"])), np.load(os.path.join(ref_dir, b["file"]))), b["file"])
    for m in models:
        rme, ne = refm["models"][m], newm["models"][m]
        files = [f"{m}__logits.npy"] + rme.get("inputs", ["input_x.npy"])
        files += [w["file"] for l in rme["layers"] for w in l["weights"]]
        for f in files:
            upd(rel_diff(np.load(os.path.join(new_dir, f)), np.load(os.path.join(ref_dir, f))), f)
        if ne["layers"] != rme["layers"]:
            problems.append(f"{m}: layer description differs")
        # ONNX: same op list, and ONNX Runtime gives the same outputs on the model's inputs
        ref_onnx = rme.get("onnx", f"onnx/{m}_opset{OPSET}.onnx")
        import onnx
        pa, pb = onnx.load(os.path.join(new_dir, ne["onnx"])), onnx.load(os.path.join(ref_dir, ref_onnx))
        if sorted(x.op_type for x in pa.graph.node) != sorted(x.op_type for x in pb.graph.node):
            problems.append(f"{ref_onnx}: different ONNX op list")
        sa = ort.InferenceSession(pa.SerializeToString(), providers=["CPUExecutionProvider"])
        sb = ort.InferenceSession(pb.SerializeToString(), providers=["CPUExecutionProvider"])
        for f in rme.get("inputs", ["input_x.npy"]):
            x = np.load(os.path.join(ref_dir, f))
            ya = sa.run(None, {sa.get_inputs()[0].name: x})[0]
            yb = sb.run(None, {sb.get_inputs()[0].name: x})[0]
            upd(rel_diff(ya, yb), f"{ref_onnx} on {f}")
    return worst, n, problems


def install(stage, models, tol):
    """Update golden/ from a regenerated set: new models are written, shipped files are only verified."""
    refm = json.load(open(os.path.join(HERE, "manifest.json")))
    newm = json.load(open(os.path.join(stage, "manifest.json")))
    shipped = [m for m in models if m in SHIPPED]
    if shipped:
        worst, n, problems = compare(stage, HERE, shipped, tol)
        log(f"shipped {shipped}: {n} files compared, worst relative difference {worst[0]:.3e} ({worst[1]})")
        if problems:
            raise SystemExit("regeneration does not reproduce the shipped goldens; not installing:\n  "
                             + "\n  ".join(problems[:50]))
    fresh = [m for m in models if m not in SHIPPED]
    for m in fresh:
        for f in os.listdir(stage):
            if f.startswith(f"{m}__") or f == f"{m}.h5":
                shutil.copy(os.path.join(stage, f), os.path.join(HERE, f))
        os.makedirs(os.path.join(HERE, "onnx"), exist_ok=True)
        shutil.copy(os.path.join(stage, newm["models"][m]["onnx"]), os.path.join(HERE, newm["models"][m]["onnx"]))
    # manifest: shipped models and records stay as committed (plus their input / onnx fields)
    out = {k: v for k, v in refm.items() if k not in ("models", "results")}
    out["generator"] = newm["generator"]
    out["models"], out["results"] = {}, []
    for m in SHIPPED:
        e = refm["models"][m]
        e.setdefault("onnx", f"onnx/{m}_opset{OPSET}.onnx")
        e.setdefault("inputs", ["input_x.npy"])
        out["models"][m] = e
    for m, e in refm["models"].items():
        if m not in SHIPPED and m not in fresh:
            out["models"][m] = e
    for m in fresh:
        out["models"][m] = newm["models"][m]
    for r in refm["results"]:
        if r["model"] in SHIPPED:
            r.setdefault("input", "input_x.npy")
            out["results"].append(r)
        elif r["model"] not in fresh:
            out["results"].append(r)
    out["results"].extend(r for r in newm["results"] if r["model"] in fresh)
    with open(os.path.join(HERE, "manifest.json"), "w") as f:
        json.dump(out, f, indent=1)
    log(f"installed {fresh} into {HERE}; manifest has {len(out['results'])} records")


def main():
    ap = argparse.ArgumentParser(description="Rebuild the goldens from signxai 1.1.9.2 / TensorFlow 2.12.1")
    ap.add_argument("--out", help="directory for the regenerated set (default: a new temp dir)")
    ap.add_argument("--models", default=",".join(SHIPPED + NEW), help="comma-separated subset")
    ap.add_argument("--install", action="store_true", help="update golden/ in place (shipped files only verified)")
    ap.add_argument("--check", metavar="GOLDEN", help="compare the regenerated set with this committed set")
    ap.add_argument("--reuse-trained", action="store_true",
                    help="explain the committed trained digits_cnn weights instead of retraining (for machines whose "
                         "CPU kind differs from the one that trained them; training itself is then not checked)")
    ap.add_argument("--tol", type=float, default=1e-6, help="relative tolerance for --check/--install (1e-6)")
    a = ap.parse_args()
    models = [m for m in a.models.split(",") if m]
    for m in models:
        if m not in SHIPPED + NEW:
            raise SystemExit(f"unknown model {m}")
    out = a.out or tempfile.mkdtemp(prefix="relprop-golden-")
    if os.path.abspath(out) == HERE:
        raise SystemExit("--out must not be golden/ itself; use --install")
    log(f"TF_ENABLE_ONEDNN_OPTS={os.environ['TF_ENABLE_ONEDNN_OPTS']}, TensorFlow {tf.__version__}; writing {out}")
    t0 = time.time()
    generate(out, models, reuse_trained=("digits_cnn",) if a.reuse_trained else ())
    log(f"generated {len(models)} models in {time.time() - t0:.0f} s into {out}")
    if a.install:
        install(out, models, a.tol)
    if a.check:
        worst, n, problems = compare(out, os.path.abspath(a.check), models, a.tol)
        log(f"check: {n} arrays compared against {a.check}; worst relative difference {worst[0]:.3e} ({worst[1]})")
        if problems:
            log(f"{len(problems)} problems:")
            for p in problems[:100]:
                log("  " + p)
            raise SystemExit(1)
        log(f"check passed (tolerance {a.tol:g})")


if __name__ == "__main__":
    main()
