"""Import fixtures exported by tf2onnx itself (not relprop's writer), for crates/relprop-onnx/tests/keras_exports.rs.

keras_ln_fused.onnx: Keras LayerNormalization at its default epsilon (1e-3), which takes Keras' fused path
(a reshape into a training-mode FusedBatchNormV3, then · gamma + beta). tf2onnx writes it with a dynamic batch as
Shape/Slice/Concat reshape targets, Expand-ed unit scale and zero offset, the statistics spelled out
(ReduceMean, ReduceSumSquare / count) and an inference BatchNormalization. Layers: Conv2D, LayerNormalization
over the channels, ReLU, Conv2D, LayerNormalization over (H, W, C), GAP, Dense, LayerNormalization without
scale, Dense. Random gamma/beta. keras_ln_input.npy holds a batch of 3 inputs, keras_ln_logits.npy Keras' logits.

keras_conv1d_transpose.onnx: a Conv1DTranspose with `same` padding (tf2onnx: Unsqueeze, a VALID 2-D ConvTranspose,
a Slice and a Pad computed from the output's shape (Neg, Max, Split among them), Squeeze, then the bias and the
ReLU), a ThresholdedReLU (one ThresholdedRelu op with a made-up name), a Dense with `exponential`, a Dense.
keras_ct_input.npy / keras_ct_logits.npy: a batch of 3 and Keras' logits.

Run with the golden venv: .deps/venv-golden/bin/python tools/keras_fixtures.py
Versions used for the committed files: TensorFlow 2.12.1 (Keras 2.12), tf2onnx 1.17.0, opset 13.
"""
import os
import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(__file__))
import keras2onnx_lrp  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "relprop-onnx", "tests", "data")
L = tf.keras.layers


def main():
    tf.random.set_seed(7)
    rng = np.random.default_rng(7)
    x = tf.keras.Input((6, 6, 3))
    h = L.Conv2D(4, 3, padding="same", name="c")(x)
    h = L.LayerNormalization(name="ln")(h)
    h = L.ReLU(name="r")(h)
    h = L.Conv2D(5, 3, name="c2")(h)
    h = L.LayerNormalization(axis=[1, 2, 3], name="ln2")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    h = L.Dense(8, name="d")(h)
    h = L.LayerNormalization(scale=False, name="ln3")(h)
    h = L.Dense(3, name="out")(h)
    model = tf.keras.Model(x, h)
    for layer in model.layers:
        if isinstance(layer, L.LayerNormalization):
            layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in layer.get_weights()])
    keras2onnx_lrp.export(model, os.path.join(OUT, "keras_ln_fused.onnx"), plain=True)
    xin = rng.standard_normal((3, 6, 6, 3)).astype(np.float32)
    np.save(os.path.join(OUT, "keras_ln_input.npy"), xin)
    np.save(os.path.join(OUT, "keras_ln_logits.npy"), model(xin).numpy())

    x = tf.keras.Input((8, 3))
    h = L.Conv1DTranspose(4, 3, strides=2, padding="same", activation="relu", name="ct")(x)
    h = L.ThresholdedReLU(0.2, name="tr")(h)
    h = L.Flatten(name="fl")(h)
    h = L.Dense(6, activation="exponential", name="d")(h)
    h = L.Dense(3, name="out")(h)
    model = tf.keras.Model(x, h)
    model.get_layer("d").set_weights([w * 0.3 for w in model.get_layer("d").get_weights()])
    # Non-zero biases: tf2onnx drops the Add of a zero bias.
    for name in ("ct", "d", "out"):
        kernel, bias = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([kernel, 0.1 * rng.standard_normal(bias.shape).astype(np.float32)])
    keras2onnx_lrp.export(model, os.path.join(OUT, "keras_conv1d_transpose.onnx"), plain=True)
    xin = rng.standard_normal((3, 8, 3)).astype(np.float32)
    np.save(os.path.join(OUT, "keras_ct_input.npy"), xin)
    np.save(os.path.join(OUT, "keras_ct_logits.npy"), model(xin).numpy())


if __name__ == "__main__":
    main()
