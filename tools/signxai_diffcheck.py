#!/usr/bin/env python3
"""Differential check: relprop's CLI against live signxai 1.1.9.2 on Keras architectures the goldens lack.

    cargo xtask diffcheck [--seed N] [--models a,b] [--methods m1,c:LRPGamma,c:LRPStdxEpsilon:stdfactor=0.5]

For every architecture below (ZeroPadding, Cropping, Permute, BN first / after Dense / after Conv1D, strided and
dilated convs, overlapping pools, depthwise and separable convs, residual Dense and conv blocks, Average,
Concatenate, Dropout, LeakyReLU and other activations, a Keras-ResNet stem), with seeded
random weights and BN statistics: export with tools/keras2onnx_lrp.py, run each method through signxai (the
wrapper functions, or `c:Class[:k=v;k=v]` through the analyzer classes) and through `relprop explain`, and
compare (max |relprop - signxai| / max |signxai|). A difference above 1e-4 is a MISMATCH unless relprop's own
map moves by at least a tenth of it when the input is nudged by 1e-7 relative (one float32 ulp): then the map is
ill-conditioned (near-zero denominators) and no float32 implementation can agree better; it is reported as
such. Exit status 1 on any real mismatch. Nothing here writes goldens.

Needs the golden venv (`cargo xtask golden` creates it) and a release build of the CLI; `cargo xtask diffcheck`
does both. Found with it so far: tf2onnx merging ZeroPadding into the conv and dropping Dropout (both kept by
keras2onnx_lrp.py now), ZeroPadding not counted by until_layer_idx, signxai's set walk over residual branches,
tf2onnx's generated node names hiding a DepthwiseConv2D's layer, Keras Average explained with the Add rule
(signxai: the gradient), Cropping (ONNX Slice) unsupported, SeparableConv2D explained as two layers (then
refused; now one kernel with a pointwise stage), Keras Dense on rank-3 inputs (tf2onnx's Tensordot reshapes merge the batch; now imported as one Dense
on the last axis), a tf2onnx-generated node (`Transpose__38`) read by a Shape node as well as by its layer
losing its Keras layer (so until_layer_idx counted it), and Keras Multiply/Subtract/Maximum/Minimum, swish,
UpSampling and Conv2DTranspose (unsupported until then). It also showed signxai applying a Subtract to its inputs in the order they arrive in its
forward walk rather than the declared one (docs/divergences.md); `merge_math` declares them in arrival order.
The keras.applications models (`app_*`, fewer methods each) found that this walk also scrambles DenseNet's and
InceptionV3's Concatenates (relprop now replays it), that Keras Rescaling/Normalization pass relevance unchanged
(relprop gave them the BN rule), and that tf2onnx puts a Reshape inside a strided SeparableConv (NASNet).
Maps below VANISHING are reported, not compared: deep random models shrink some maps to ~1e-30, where TensorFlow
flushes denormal intermediates to zero. Known gaps it does not cover: tf2onnx cannot convert grouped Conv2D;
signxai crashes on BatchNormalization with center=False or scale=False, and on MobileNetV3 (its TFOpLambda
layers).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
warnings.simplefilter("ignore")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")
# signxai re-enables warnings itself (simplefilter("always")): silence their display instead, as golden/generate.py
warnings.showwarning = lambda *a, **k: None
from tensorflow.keras import layers as L  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import keras2onnx_lrp  # noqa: E402
import signxai.methods.wrappers as W  # noqa: E402
from signxai.methods.innvestigate.analyzer.relevance_based import relevance_analyzer as RA  # noqa: E402

TOL = 1e-4
# Models relprop refuses on purpose, with a word of the expected message.
EXPECTED_REFUSALS = {"unit_norm": "unsupported op 'ReduceSum'"}


def seq(*fs):
    def f(x):
        for g in fs:
            x = g(x)
        return x
    return f


def residual(branch, after=None):
    def f(x):
        y = L.Add(name="add")([branch(x), x])
        return after(y) if after else y
    return f


ARCHS = {
    "bn_first": ((8, 8, 3), seq(L.BatchNormalization(name="bn0"), L.Conv2D(4, 3, padding="same", activation="relu", name="c"),
                               L.Flatten(name="fl"), L.Dense(5, name="out"))),
    "dense_bn": ((12,), seq(L.Dense(10, name="d1"), L.BatchNormalization(name="bn1"), L.ReLU(name="r"), L.Dense(6, name="d2"),
                            L.BatchNormalization(name="bn2"), L.Dense(3, name="out"))),
    "strided_same": ((10, 10, 3), seq(L.Conv2D(4, 3, strides=2, padding="same", name="c1"), L.ReLU(name="r"),
                                      L.Conv2D(5, (2, 3), strides=(1, 2), padding="same", name="c2"),
                                      L.MaxPooling2D(3, strides=2, padding="same", name="mp"), L.Flatten(name="fl"), L.Dense(4, name="out"))),
    "avgpool_overlap": ((9, 9, 2), seq(L.Conv2D(3, 3, activation="relu", name="c"), L.AveragePooling2D(3, strides=2, name="ap"),
                                       L.GlobalMaxPooling2D(name="gmp"), L.Dense(4, name="out"))),
    "conv1d_dilated": ((32, 3), seq(L.Conv1D(4, 3, dilation_rate=2, padding="same", activation="relu", name="c1"),
                                    L.Conv1D(5, 4, strides=2, activation="relu", name="c2"), L.MaxPooling1D(2, name="mp"),
                                    L.Flatten(name="fl"), L.Dense(3, name="out"))),
    "conv1d_bn_stride": ((17, 2), seq(L.Conv1D(4, 4, strides=3, padding="same", name="c"), L.BatchNormalization(name="bn"),
                                      L.GlobalAveragePooling1D(name="gap"), L.Dense(3, name="out"))),
    "residual_dense": ((10,), seq(L.Dense(8, activation="relu", name="d1"), residual(L.Dense(8, name="d2"), L.ReLU(name="r")),
                                  L.Dense(3, name="out"))),
    "depthwise": ((8, 8, 3), seq(L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu", name="dw"),
                                 L.Conv2D(4, 1, name="pw"), L.GlobalAveragePooling2D(name="gap"), L.Dense(3, name="out"))),
    "activations": ((10,), seq(L.Dense(8, activation="tanh", name="d1"), L.Dense(8, activation="elu", name="d2"),
                               L.Dense(8, activation="sigmoid", name="d3"), L.Dense(3, name="out"))),
    "zeropad": ((7, 7, 3), seq(L.ZeroPadding2D(((1, 2), (0, 1)), name="zp"), L.Conv2D(4, 3, name="c"), L.Flatten(name="fl"),
                               L.Dense(3, name="out"))),
    "concat_branches": ((8, 8, 3), lambda x: seq(L.Conv2D(4, 1, name="mix"), L.GlobalAveragePooling2D(name="gap"), L.Dense(3, name="out"))(
        L.Concatenate(name="cat")([L.Conv2D(3, 3, padding="same", activation="relu", name="ca")(x),
                                   L.Conv2D(2, 1, activation="relu", name="cb")(x)]))),
    "leaky_dropout": ((10,), seq(L.Dense(8, name="d1"), L.LeakyReLU(0.2, name="lr"), L.Dropout(0.5, name="do"),
                                 L.Dense(6, activation="relu", name="d2"), L.Dense(3, name="out"))),
    "average_merge": ((10,), lambda x: seq(L.ReLU(name="r"), L.Dense(3, name="out"))(
        L.Average(name="avg")([L.Dense(8, name="d1")(x), L.Dense(8, name="d2")(x)]))),
    "merges_dropout": ((10,), lambda x: (lambda h: seq(L.Dense(3, name="out"))(L.Concatenate(name="cat")([
        L.ReLU(name="r")(L.Average(name="avg")([L.Dense(6, name="da")(h), L.Dense(6, name="db")(h)])),
        L.Dense(4, activation="tanh", name="dc")(h)])))(L.Dropout(0.3, name="do")(L.Dense(8, activation="relu", name="d1")(x)))),
    "dilated_nobias": ((10, 10, 4), seq(L.Conv2D(6, 3, padding="same", activation="relu", name="g"),
                                         L.Conv2D(4, 3, dilation_rate=2, padding="same", use_bias=False, name="dil"),
                                         L.AveragePooling2D(3, strides=2, padding="same", name="ap"), L.Flatten(name="fl"),
                                         L.Dense(3, name="out"))),
    "separable": ((8, 8, 3), seq(L.SeparableConv2D(4, 3, padding="same", activation="relu", name="sep"),
                                 L.SeparableConv2D(5, 3, strides=2, depth_multiplier=2, use_bias=False, name="sep2"),
                                 L.ReLU(name="r"), L.GlobalAveragePooling2D(name="gap"), L.Dense(3, name="out"))),
    "separable1d": ((16, 3), seq(L.SeparableConv1D(4, 3, padding="same", activation="relu", name="sep"),
                                 L.SeparableConv1D(5, 3, strides=2, depth_multiplier=2, use_bias=False, name="sep2"),
                                 L.ReLU(name="r"), L.Flatten(name="fl"), L.Dense(3, name="out"))),
    "se_swish": ((8, 8, 3), lambda x: (lambda h: seq(L.Activation("swish", name="act"), L.GlobalAveragePooling2D(name="gap"),
                                                        L.Dense(3, name="out"))(
        L.Multiply(name="scale")([h, seq(L.GlobalAveragePooling2D(name="sq"), L.Reshape((1, 1, 6), name="rs"),
                                         L.Conv2D(3, 1, activation="relu", name="red"),
                                         L.Conv2D(6, 1, activation="sigmoid", name="exc"))(h)])))(
        L.Conv2D(6, 3, padding="same", activation="swish", name="c")(x))),
    "merge_math": ((10,), lambda x: (lambda a, b, c: seq(L.Dense(3, name="out"))(
        L.Multiply(name="mul")([L.Maximum(name="max")([a, b, c]), L.Minimum(name="min")([a, c]), L.Subtract(name="sub")([a, b])])))(
        L.Dense(6, activation="relu", name="da")(x), L.Dense(6, name="db")(x), L.Dense(6, activation="tanh", name="dc")(x))),
    "upsampling": ((6, 5, 3), seq(L.Conv2D(4, 3, padding="same", activation="relu", name="c"), L.UpSampling2D((2, 3), name="up"),
                                  L.Conv2D(3, 3, strides=2, activation="relu", name="c2"), L.Flatten(name="fl"), L.Dense(3, name="out"))),
    "upsampling_bilinear": ((6, 5, 3), seq(L.Conv2D(4, 3, padding="same", activation="relu", name="c"),
                                           L.UpSampling2D((2, 3), interpolation="bilinear", name="up"),
                                           L.Conv2D(3, 3, strides=2, activation="relu", name="c2"), L.Flatten(name="fl"),
                                           L.Dense(3, name="out"))),
    "upsampling1d": ((9, 2), seq(L.Conv1D(3, 3, activation="relu", name="c"), L.UpSampling1D(3, name="up"),
                                 L.Conv1D(4, 4, strides=2, name="c2"), L.Flatten(name="fl"), L.Dense(3, name="out"))),
    "conv_transpose": ((5, 6, 3), seq(L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu", name="ct"),
                                      L.Conv2DTranspose(2, (2, 3), strides=(1, 2), name="ct2"), L.Flatten(name="fl"),
                                      L.Dense(3, name="out"))),
    "reshape_permute_crop": ((8, 6, 2), seq(L.Cropping2D(((1, 0), (0, 1)), name="crop"), L.Conv2D(3, 3, activation="relu", name="c"),
                                            L.Permute((2, 1, 3), name="perm"), L.Reshape((5, 9), name="rs"),
                                            L.Flatten(name="fl"), L.Dense(3, name="out"))),
    "dense_on_sequence": ((6, 4), seq(L.Conv1D(5, 3, padding="same", activation="relu", name="c1"),
                                      L.Dense(7, activation="relu", name="dseq"), L.Dense(4, name="dseq2"),
                                      L.Flatten(name="fl"), L.Dense(3, name="out"))),
    "resnet_stem": ((16, 16, 3), seq(L.ZeroPadding2D(3, name="pad1"), L.Conv2D(4, 7, strides=2, name="c1"),
                                     L.BatchNormalization(name="bn1"), L.ReLU(name="r1"), L.ZeroPadding2D(1, name="pad2"),
                                     L.MaxPooling2D(3, strides=2, name="mp"),
                                     residual(seq(L.Conv2D(4, 3, padding="same", name="c2"), L.BatchNormalization(name="bn2"),
                                                  L.ReLU(name="r2"), L.Conv2D(4, 3, padding="same", name="c3"),
                                                  L.BatchNormalization(name="bn3")), L.ReLU(name="r3")),
                                     L.GlobalAveragePooling2D(name="gap"), L.Dense(3, name="out"))),
    "gelu_dense4d": ((6, 6, 3), seq(L.Conv2D(4, 3, padding="same", name="c"), L.Dense(6, activation="gelu", name="d0"),
                                    L.Activation("gelu", name="act"), L.Dense(4, name="d1"),
                                    L.GlobalAveragePooling2D(name="gap"), L.Dense(3, name="out"))),
    "layernorm": ((6, 6, 3), seq(L.Conv2D(4, 3, padding="same", name="c"), L.LayerNormalization(name="ln"), L.ReLU(name="r"),
                                 L.Conv2D(5, 3, name="c2"), L.LayerNormalization(axis=[1, 2, 3], name="ln2"),
                                 L.GlobalAveragePooling2D(name="gap"), L.Dense(3, name="out"))),
    "layernorm_dense": ((10,), seq(L.Dense(8, name="d1"), L.LayerNormalization(name="ln1"), L.Dense(6, activation="relu", name="d2"),
                                   L.LayerNormalization(center=False, scale=False, epsilon=0.01, name="ln2"), L.Dense(3, name="out"))),
    "prelu": ((6, 6, 3), seq(L.Conv2D(4, 3, padding="same", name="c"), L.PReLU(shared_axes=[1, 2], name="pr"),
                             L.Conv2D(4, 3, name="c2"), L.PReLU(name="pr2"), L.Flatten(name="fl"), L.Dense(5, name="d"),
                             L.PReLU(name="pr3"), L.Dense(3, name="out"))),
    "prelu1d": ((12, 2), seq(L.Conv1D(4, 3, padding="same", name="c"), L.PReLU(shared_axes=[1], name="pr"),
                             L.Conv1D(3, 3, strides=2, name="c2"), L.PReLU(name="pr2"), L.Flatten(name="fl"),
                             L.Dense(3, name="out"))),
    "conv3d": ((6, 6, 5, 2), seq(L.Conv3D(3, 3, padding="same", activation="relu", name="c"), L.MaxPooling3D(2, name="mp"),
                                 L.Conv3D(4, (2, 2, 1), name="c2"), L.AveragePooling3D((2, 1, 2), padding="same", name="ap"),
                                 L.GlobalAveragePooling3D(name="gap"), L.Dense(3, name="out"))),
    "pool1d_same": ((19, 3), seq(L.Conv1D(4, 3, padding="same", activation="relu", name="c"),
                                 L.AveragePooling1D(3, strides=2, padding="same", name="ap"),
                                 L.MaxPooling1D(2, padding="same", name="mp"), L.GlobalMaxPooling1D(name="gmp"),
                                 L.Dense(3, name="out"))),
    "pool2d_same": ((9, 9, 2), seq(L.Conv2D(3, 3, padding="same", activation="relu", name="c"),
                                   L.MaxPooling2D(3, strides=2, padding="same", name="mp"),
                                   L.AveragePooling2D(2, padding="same", name="ap"), L.Flatten(name="fl"), L.Dense(3, name="out"))),
    "activations2": ((10,), seq(L.Dense(8, activation="softplus", name="d1"), L.Dense(8, activation="selu", name="d2"),
                                L.Dense(8, activation="swish", name="d3"), L.ReLU(max_value=6.0, name="r6"),
                                L.Dense(8, activation="hard_sigmoid", name="d4"), L.ELU(alpha=0.5, name="elu"),
                                L.Dense(8, name="d5"), L.LeakyReLU(0.3, name="lr"), L.Activation("tanh", name="t"),
                                L.Dense(3, name="out"))),
    "noise_layers": ((8, 8, 3), seq(L.Conv2D(4, 3, activation="relu", name="c"), L.SpatialDropout2D(0.2, name="sd"),
                                    L.GaussianNoise(0.1, name="gn"), L.GaussianDropout(0.1, name="gd"),
                                    L.ActivityRegularization(0.01, name="ar"), L.Conv2D(4, 3, name="c2"),
                                    L.Flatten(name="fl"), L.AlphaDropout(0.1, name="ad"), L.Dense(3, name="out"))),
    "layout_1d": ((12, 4), seq(L.ZeroPadding1D(2, name="zp"), L.DepthwiseConv1D(3, activation="relu", name="dw"),
                               L.Cropping1D((1, 2), name="cr"), L.Permute((2, 1), name="pm"), L.Dense(5, name="d"),
                               L.Flatten(name="fl"), L.Dense(3, name="out"))),
    "layout_3d": ((6, 6, 4, 2), seq(L.Conv3D(3, 2, activation="relu", name="c"), L.UpSampling3D((1, 2, 1), name="up"),
                                    L.ZeroPadding3D((1, 0, 1), name="zp"), L.Cropping3D(((0, 1), (2, 1), (0, 0)), name="cr"),
                                    L.AveragePooling3D(2, name="ap"), L.GlobalMaxPooling3D(name="gmp"),
                                    L.Dense(3, name="out"))),
    "relu_threshold": ((10,), seq(L.Dense(8, name="d1"), L.ReLU(threshold=0.3, name="r"), L.Dense(3, name="out"))),
    "exp_threshold": ((10,), seq(L.Dense(8, activation="exponential", name="d1"), L.ThresholdedReLU(0.2, name="tr"),
                                 L.Dense(3, name="out"))),
    "conv1d_transpose": ((8, 3), seq(L.Conv1DTranspose(4, 3, strides=2, padding="same", activation="relu", name="ct"),
                                     L.Conv1DTranspose(3, 2, name="ct2"), L.Flatten(name="fl"), L.Dense(3, name="out"))),
    # Refused with a clear error (EXPECTED_REFUSALS): UnitNormalization (ReduceSum).
    "repeat_vector": ((10,), seq(L.Dense(4, activation="relu", name="d1"), L.RepeatVector(3, name="rv"),
                                 L.Flatten(name="fl"), L.Dense(3, name="out"))),
    "unit_norm": ((10,), seq(L.Dense(6, name="d1"), L.UnitNormalization(name="un"), L.Dense(3, name="out"))),
    "softsign": ((10,), seq(L.Dense(8, activation="softsign", name="d1"), L.Dense(8, name="d2"),
                            L.Activation("softsign", name="s"), L.Dense(3, name="out"))),
    "conv1d_causal": ((16, 2), seq(L.Conv1D(4, 3, padding="causal", activation="relu", name="c1"),
                                   L.Conv1D(4, 2, padding="causal", dilation_rate=2, activation="relu", name="c2"),
                                   L.Conv1D(3, 3, padding="causal", strides=2, name="c3"),
                                   L.GlobalAveragePooling1D(name="gap"), L.Dense(3, name="out"))),
    "gap_keepdims": ((7, 7, 3), seq(L.Conv2D(4, 3, activation="relu", name="c"),
                                    L.GlobalAveragePooling2D(keepdims=True, name="gap"), L.Conv2D(5, 1, activation="relu", name="c2"),
                                    L.Flatten(name="fl"), L.Dense(3, name="out"))),
    # (ReLU with both max_value and negative_slope is refused: Neg of a tensor. A threshold: `relu_threshold`.)
    "relu_variants": ((10,), seq(L.Dense(8, name="d1"), L.ReLU(negative_slope=0.1, name="r1"), L.Dense(8, name="d2"),
                                 L.ReLU(max_value=2.0, name="r2"), L.Dense(8, activation="relu6", name="d3"),
                                 L.Dense(3, name="out"))),
    "depthwise_mult": ((9, 9, 3), seq(L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same", name="dw"),
                                      L.BatchNormalization(name="bn"), L.ReLU(6.0, name="r6"),
                                      L.DepthwiseConv2D((2, 3), use_bias=False, name="dw2"), L.Flatten(name="fl"),
                                      L.Dense(3, name="out"))),
    "cropping_upsample": ((8, 10, 2), seq(L.Conv2D(3, 3, padding="same", activation="relu", name="c"),
                                          L.Cropping2D(((2, 1), (0, 3)), name="crop"), L.UpSampling2D((2, 3), name="up"),
                                          L.Conv2D(3, 3, strides=2, name="c2"), L.Flatten(name="fl"), L.Dense(3, name="out"))),
    # keras.applications architectures (random weights, small inputs, no softmax): real-world layer mixes.
    "app_mobilenetv2": ((32, 32, 3), lambda x: tf.keras.applications.MobileNetV2(
        input_tensor=x, alpha=0.35, weights=None, classes=4, classifier_activation=None).output),
    "app_resnet50v2": ((32, 32, 3), lambda x: tf.keras.applications.ResNet50V2(
        input_tensor=x, weights=None, classes=4, classifier_activation=None).output),
    "app_densenet121": ((32, 32, 3), lambda x: tf.keras.applications.DenseNet121(
        input_tensor=x, weights=None, classes=4, classifier_activation=None).output),
    "app_inceptionv3": ((75, 75, 3), lambda x: tf.keras.applications.InceptionV3(
        input_tensor=x, weights=None, classes=4, classifier_activation=None).output),
    "app_xception": ((71, 71, 3), lambda x: tf.keras.applications.Xception(
        input_tensor=x, weights=None, classes=4, classifier_activation=None).output),
    "app_efficientnetb0": ((32, 32, 3), lambda x: tf.keras.applications.EfficientNetB0(
        input_tensor=x, weights=None, classes=4, classifier_activation=None).output),
    "app_mobilenetv3small": ((32, 32, 3), lambda x: tf.keras.applications.MobileNetV3Small(
        input_tensor=x, weights=None, classes=4, classifier_activation=None, minimalistic=False).output),
    "app_nasnetmobile": ((32, 32, 3), lambda x: tf.keras.applications.NASNetMobile(
        input_tensor=x, input_shape=(32, 32, 3), weights=None, classes=4, classifier_activation=None).output),
}

METHODS = ["lrp_z", "lrpsign_z", "w2lrp_z", "flatlrp_z", "zblrp_z_VGG16ILSVRC", "lrp_epsilon_0_1", "lrpz_epsilon_0_1",
           "lrp_epsilon_100", "lrpsign_epsilon_100_mu_0_5", "lrpsign_epsilon_0_25_std_x_mu_neg_0_5", "lrpz_epsilon_1_std_x",
           "zblrp_epsilon_0_5_std_x_VGG16ILSVRC", "lrp_alpha_1_beta_0", "lrpsign_alpha_1_beta_0", "w2lrp_alpha_1_beta_0",
           "lrp_sequential_composite_a", "lrp_sequential_composite_b", "flatlrp_sequential_composite_b",
           "c:LRPAlpha2Beta1", "c:LRPGamma", "c:LRPZPlusFast", "c:LRPAlpha2Beta1IgnoreBias", "c:LRPStdxEpsilon:stdfactor=0.5",
           "c:LRPRuleUntilIndex:until_layer_idx=1", "c:LRPRuleUntilIndex:until_layer_idx=2", "c:LRPRuleUntilIndex:until_layer_idx=4",
           "c:LRPSequentialCompositeAFlat", "c:LRPZIgnoreBias", "c:LRPWSquare", "c:LRPFlat"]


# The keras.applications models are large for signxai (a fresh analyzer graph per method): fewer methods, one of
# each family.
APP_METHODS = ["lrp_z", "lrpsign_z", "zblrp_z_VGG16ILSVRC", "lrp_epsilon_0_1", "lrpz_epsilon_1_std_x", "lrp_alpha_1_beta_0",
               "w2lrp_alpha_1_beta_0", "lrp_sequential_composite_b", "flatlrp_sequential_composite_b",
               "c:LRPRuleUntilIndex:until_layer_idx=3"]
# Below this size a map is float32 rounding of vanishing relevance (TensorFlow flushes denormal intermediates
# to zero, relprop keeps them): reported, not compared.
VANISHING = 1e-20


def randomize(model, rng, shift=0.3):
    """Random BN statistics and biases (Keras initialises them to constants, which would hide bias handling).
    `shift` is the spread of BN's beta and moving mean: every BN shift absorbs relevance, so a deep model (the
    keras.applications ones) gets smaller shifts, or its maps shrink to rounding noise."""
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            new = []
            for w, v in zip(layer.weights, layer.get_weights()):
                n = w.name
                new.append(rng.uniform(0.5, 1.5, v.shape) if "gamma" in n else rng.normal(0, shift, v.shape) if ("beta" in n or "mean" in n)
                           else rng.uniform(0.5, 2.0, v.shape))
            layer.set_weights(new)
        elif isinstance(layer, L.LayerNormalization) and layer.weights:
            layer.set_weights([rng.uniform(0.5, 1.5, v.shape) if "gamma" in w.name else rng.normal(0, shift, v.shape)
                               for w, v in zip(layer.weights, layer.get_weights())])
        elif isinstance(layer, L.PReLU):
            layer.set_weights([rng.uniform(-0.3, 0.6, layer.get_weights()[0].shape)])
        elif getattr(layer, "bias", None) is not None:
            ws = layer.get_weights()
            ws[-1] = rng.normal(0, 0.1, ws[-1].shape)
            layer.set_weights(ws)


def parse_value(v):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def signxai_map(model, x, method):
    """signxai's map (no batch axis) and the matching relprop CLI arguments."""
    if method.startswith("c:"):
        _, cls, params = (method.split(":", 2) + [""])[:3]
        kw = {k: parse_value(v) for k, v in (kv.split("=") for kv in params.split(";") if kv)}
        res = getattr(RA, cls)(model, **kw).analyze(x, neuron_selection="max_activation")
        ref = np.asarray(list(res.values())[0])[0]
        return ref, ["--analyzer", cls] + sum((["--param", f"{k}={v}"] for k, v in kw.items()), [])
    return np.asarray(getattr(W, method)(model, x[0])), ["--method", method]


def relprop_map(relprop, onnx, x, args, tmp):
    xin, out = os.path.join(tmp, "x.npy"), os.path.join(tmp, "r.npy")
    np.save(xin, x.astype(np.float32))
    p = subprocess.run([relprop, "explain", "--model", onnx, "--input", xin, "--output", out] + args, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip())
    return np.load(out)[0]


def keep_case(model, name, path, x, ref=None, method=None, args=None):
    """Keep what reproduces a relprop error or a mismatch in reports/diffcheck/ (git-ignored): the ONNX file, the
    input, the Keras model (its random weights differ between runs) and, for a mismatch, signxai's map and the CLI
    arguments."""
    keep = os.path.join(ROOT, "reports", "diffcheck")
    os.makedirs(keep, exist_ok=True)
    shutil.copy(path, os.path.join(keep, os.path.basename(path)))
    np.save(os.path.join(keep, f"{name}__input.npy"), x)
    model.save(os.path.join(keep, f"{name}.h5"))
    if ref is not None:
        np.save(os.path.join(keep, f"{name}__{method}__signxai.npy"), ref)
        with open(os.path.join(keep, f"{name}__{method}__args.txt"), "w") as f:
            f.write(" ".join(args) + "\n")


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), np.finfo(np.float32).tiny))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--relprop", default=os.path.join(ROOT, "target", "release", "relprop"))
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--models", default=",".join(ARCHS))
    ap.add_argument("--methods", help=f"default: {len(METHODS)} methods, {len(APP_METHODS)} on the app_* models")
    ap.add_argument("--plain", action="store_true", help="also check plain tf2onnx exports (BN may be folded or lowered)")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    counts = {"ok": 0, "ill-conditioned": 0, "vanishing": 0, "MISMATCH": 0, "signxai error": 0, "refused as expected": 0, "relprop error": 0, "export error": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            shape, body = ARCHS[name]
            tf.random.set_seed(a.seed)
            x_in = tf.keras.Input(shape, name="x")
            model = tf.keras.Model(x_in, body(x_in), name=name)
            randomize(model, rng, shift=0.02 if name.startswith("app_") else 0.3)
            exports = [("keras2onnx_lrp", os.path.join(tmp, f"{name}.onnx"), False)]
            if a.plain:
                exports.append(("plain tf2onnx", os.path.join(tmp, f"{name}_plain.onnx"), True))
            exported = []
            for label, path, plain in exports:
                try:
                    keras2onnx_lrp.export(model, path, plain=plain)
                    exported.append((label, path, plain))
                except Exception as e:  # the exporters' own limits (the direct writer's layer list, tf2onnx's)
                    counts["export error"] += 1
                    print(f"{name:18s} {'(export)':42s} {label}: export error: {type(e).__name__}: {str(e)[:100]}")
            exports = exported
            x = rng.normal(size=(1,) + shape).astype(np.float32)
            methods = a.methods or ",".join(APP_METHODS if name.startswith("app_") else METHODS)
            for method in methods.split(","):
                try:
                    ref, args = signxai_map(model, x, method)
                except Exception as e:  # signxai's own failures (e.g. SIGN on a layer with two consumers)
                    counts["signxai error"] += 1
                    print(f"{name:18s} {method:42s} signxai error: {type(e).__name__}: {str(e)[:60]}")
                    continue
                for label, path, _ in exports:
                    try:
                        got = relprop_map(a.relprop, path, x, args, tmp).reshape(ref.shape)
                    except RuntimeError as e:
                        expected = EXPECTED_REFUSALS.get(name)
                        kind = "refused as expected" if expected and expected in str(e) else "relprop error"
                        counts[kind] += 1
                        if kind == "relprop error":
                            keep_case(model, name, path, x)
                        print(f"{name:18s} {method:42s} {label}: {kind}: {str(e)[:120]}")
                        continue
                    err = rel(got, ref)
                    verdict = "ok"
                    if np.abs(ref).max() < VANISHING:
                        verdict = "vanishing"
                    elif err > TOL:
                        # relprop's own sensitivity to a one-ulp input nudge
                        sens = max(rel(relprop_map(a.relprop, path, x * (1 + 1e-7 * np.random.default_rng(k).choice([-1, 1], x.shape)),
                                                   args, tmp).reshape(ref.shape), got) for k in (1, 2, 3, 4))
                        verdict = "ill-conditioned" if err <= 10 * sens else "MISMATCH"
                        if verdict == "MISMATCH":
                            keep_case(model, name, path, x, ref=ref, method=method, args=args)
                        verdict += f" (nudge moves it {sens:.1e})"
                    counts[verdict.split(" (")[0]] += 1
                    print(f"{name:18s} {method:42s} {label}: {err:.2e} {verdict} (max |signxai| {np.abs(ref).max():.1e})")
    print("; ".join(f"{k}: {v}" for k, v in counts.items()))
    return 1 if counts["MISMATCH"] or counts["relprop error"] else 0


if __name__ == "__main__":
    sys.exit(main())
