"""Import fixtures exported by tf2onnx itself (not relprop's writer), for crates/relprop-onnx/tests/keras_exports.rs.

keras_ln_fused.onnx: Keras LayerNormalization at its default epsilon (1e-3), which takes Keras' fused path
(a reshape into a training-mode FusedBatchNormV3, then · gamma + beta). tf2onnx writes it with a dynamic batch as
Shape/Slice/Concat reshape targets, Expand-ed unit scale and zero offset, the statistics spelled out
(ReduceMean, ReduceSumSquare / count) and an inference BatchNormalization. Layers: Conv2D, LayerNormalization
over the channels, ReLU, Conv2D, LayerNormalization over (H, W, C), GAP, Dense, LayerNormalization without
scale, Dense. Random gamma/beta. keras_ln_input.npy holds a batch of 3 inputs, keras_ln_logits.npy Keras' logits.

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


if __name__ == "__main__":
    main()
