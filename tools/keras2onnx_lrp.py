#!/usr/bin/env python3
"""Export a Keras model to ONNX so that relprop sees the same layers signxai explains.

    python tools/keras2onnx_lrp.py model.h5 out.onnx [--opset 13] [--tol 1e-5] [--plain]

Why not plain tf2onnx (`--plain` gives its output): LRP sees layers, not just the function, and tf2onnx 1.17
changes the layers in four ways:

* it merges a ZeroPadding into the next conv's pads (`rewrite_conv2d_with_pad`); in signxai the conv reads the
  padded tensor (the W²/Flat/StdxEpsilon input rules see it, and until_layer_idx counts the pad). That
  rewriter is switched off during conversion here;
* it drops Dropout and other inference no-op layers, which signxai counts for until_layer_idx: models with them
  go to the direct writer below, which writes an Identity node per such layer;
* its `BackToBackOptimizer` (the Conv + BatchNormalization fusion step) folds a BN that follows a conv into the
  conv's weights. Here the default optimizer list is used with that one optimizer replaced by a subclass that
  skips only the Conv + BN fusion; everything else is tf2onnx's usual output.
* after a Conv1D (or a Dense) Keras 2.12 does not use the fused BN kernel, so the TensorFlow graph only holds
  Rsqrt/Mul/Sub/Add, which tf2onnx folds into one Mul + one Add whatever the optimizer settings. Models with 1-D
  layers (or a BN that tf2onnx loses) are therefore written directly from the Keras weights with onnx.helper:
  a Transpose to channels-first at the start (the ONNX input stays NWC like Keras), plain 1-D Conv / pooling /
  BatchNormalization nodes on NCW data, a Transpose back to NWC before Flatten (so the Dense weights keep Keras
  semantics), Dense as MatMul + Add(bias) like tf2onnx, DepthwiseConv1D as a grouped Conv, ZeroPadding1D/Cropping1D
  as Pad/Slice, Permute as a Transpose, Add/Average/Concatenate, ReLU/LeakyReLU/Activation, and Identity for no-op
  layers. Node names are `<model>/<layer>/<Op>`, so the Keras layer name is always the middle
  path component (as in tf2onnx's output).

Every export is checked: ONNX Runtime must reproduce the Keras outputs within --tol (absolute, default 1e-5) on
random inputs (and on any --check-input .npy files), and the ONNX graph must hold one BatchNormalization node per
Keras BatchNormalization layer. Needs tensorflow (2.12), tf2onnx 1.17, onnx and onnxruntime.
"""
import argparse
import os
import sys
from collections import OrderedDict

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KERAS_BN = "BatchNormalization"


# ------------------------------------------------------------------------------------------------ tf2onnx path
def _keep_bn_optimizers():
    """tf2onnx's default optimizer list with BackToBackOptimizer replaced by one that skips Conv+BN fusion, and
    without the merging of duplicated nodes."""
    from tf2onnx import optimizer as tfopt
    from tf2onnx.optimizer import back_to_back_optimizer as b2b

    class BackToBackKeepBatchNorm(b2b.BackToBackOptimizer):
        """BackToBackOptimizer without its ('Conv', 'BatchNormalization') fusion handler."""

        def _optimize_at_current_graph_level(self, g):
            key = ("Conv", "BatchNormalization")
            saved = b2b._func_map.pop(key, None)
            try:
                return super()._optimize_at_current_graph_level(g)
            finally:
                if saved is not None:
                    b2b._func_map[key] = saved

    opts = OrderedDict()
    for name, cls in tfopt._get_optimizers().items():
        # merge_duplication would fold two identical Keras layers on one input (NASNet's twin MaxPools) into
        # one node: the same function, but signxai's layer walk (docs/divergences.md) counts both.
        if name != "merge_duplication":
            opts[name] = BackToBackKeepBatchNorm if cls is b2b.BackToBackOptimizer else cls
    return opts


def export_tf2onnx(model, opset=13, plain=False):
    """tf2onnx with BN and ZeroPadding kept, or with plain=True exactly what a user running tf2onnx gets."""
    import tensorflow as tf
    import tf2onnx
    from tf2onnx import tfonnx
    if plain:
        proto, _ = tf2onnx.convert.from_keras(model, opset=opset)
        return proto
    # tf2onnx merges a Pad (Keras ZeroPadding) into the following conv's pads. The function is the same, but
    # LRP's is not: in signxai the conv sees the padded tensor, so the padding positions count in the W²/Flat
    # denominators and in StdxEpsilon's std of the layer input. Keep the Pad a node of its own.
    merge_pad = tfonnx.rewrite_conv2d_with_pad
    tfonnx.rewrite_conv2d_with_pad = lambda g, ops: ops
    # TensorFlow's constant folding merges a Concatenate that feeds another one into it (InceptionV3's mixed9_0
    # into mixed9). signxai's walk treats them as two layers, and relprop replays that walk from the layers in
    # the file (docs/divergences.md): converting with the inner ones as extra outputs keeps them, and the extra
    # outputs are dropped afterwards.
    inner = [layer.output for layer in model.layers if type(layer).__name__ == "Concatenate"
             and any(type(n.outbound_layer).__name__ == "Concatenate" for n in layer.outbound_nodes)]
    converted = tf.keras.Model(model.inputs, [model.output] + inner, name=model.name) if inner else model
    try:
        proto, _ = tf2onnx.convert.from_keras(converted, opset=opset, optimizers=_keep_bn_optimizers())
    finally:
        tfonnx.rewrite_conv2d_with_pad = merge_pad
    del proto.graph.output[1:]
    return proto


# ------------------------------------------------------------------------------------------------ direct path
def _same_pads(n_in, k, s, d=1):
    """TensorFlow 'SAME' padding: (begin, end), the extra cell at the end (bottom/right)."""
    n_out = -(-n_in // s)
    k_eff = (k - 1) * d + 1
    total = max((n_out - 1) * s + k_eff - n_in, 0)
    return total // 2, total - total // 2


def _cf_shape(layout, shape):
    """Channels-first shape (without batch) of a tensor held in `layout`."""
    if layout == "cf" or len(shape) <= 1:
        return list(shape)
    return [shape[-1]] + list(shape[:-1])


class _Writer:
    def __init__(self, model, opset):
        from onnx import helper, numpy_helper, TensorProto
        self.h, self.nh, self.TP = helper, numpy_helper, TensorProto
        self.model, self.opset = model, opset
        self.prefix = model.name
        self.nodes, self.inits = [], []
        self.tensors = {}  # keras tensor id -> (onnx name, layout 'keras' | 'cf', keras shape without batch)

    def name(self, layer, op):
        return f"{self.prefix}/{layer.name}/{op}"

    def const(self, layer, what, arr):
        n = f"{self.prefix}/{layer.name}/{what}"
        self.inits.append(self.nh.from_array(np.asarray(arr), n))
        return n

    def node(self, layer, op, inputs, name_as=None, **attrs):
        n = self.name(layer, name_as or op)
        k = 1
        while any(x.name == n for x in self.nodes):
            n = f"{self.name(layer, name_as or op)}_{k}"
            k += 1
        self.nodes.append(self.h.make_node(op, inputs, [n + ":0"], name=n, **attrs))
        return n + ":0"

    def to_cf(self, layer, name, layout, rank):
        if layout == "cf" or rank <= 2:
            return name
        perm = [0, rank - 1] + list(range(1, rank - 1))
        return self.node(layer, "Transpose", [name], perm=perm)

    def to_keras(self, layer, name, layout, rank):
        if layout == "keras" or rank <= 2:
            return name
        perm = [0] + list(range(2, rank)) + [1]
        return self.node(layer, "Transpose", [name], perm=perm)

    def activation(self, layer, t, act):
        if act in (None, "linear"):
            return t
        ops = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "softplus": "Softplus", "softsign": "Softsign"}
        if act in ops:
            return self.node(layer, ops[act], [t])
        if act == "elu":
            return self.node(layer, "Elu", [t], alpha=1.0)
        raise NotImplementedError(f"{layer.name}: activation {act!r}")

    def write(self):
        import tensorflow as tf
        model = self.model
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise NotImplementedError("only single-input, single-output models")
        inp = model.inputs[0]
        in_name = model.input_names[0] if hasattr(model, "input_names") else inp.name.split(":")[0]
        in_shape = list(inp.shape[1:])
        self.tensors[inp.ref()] = (in_name, "keras", in_shape)
        graph_in = self.h.make_tensor_value_info(in_name, self.TP.FLOAT, ["N"] + in_shape)
        # keras layers in topological order (functional models keep that order in model.layers)
        for layer in model.layers:
            cls = layer.__class__.__name__
            if cls == "InputLayer":
                continue
            node = layer._inbound_nodes[0]
            ins = node.keras_inputs if hasattr(node, "keras_inputs") else tf.nest.flatten(node.input_tensors)
            outs = tf.nest.flatten(node.output_tensors)
            if len(outs) != 1:
                raise NotImplementedError(f"{layer.name}: several outputs")
            srcs = [self.tensors[t.ref()] for t in ins]
            out = self.layer(layer, cls, srcs)
            self.tensors[outs[0].ref()] = out
        name, layout, shape = self.tensors[model.outputs[0].ref()]
        final = self.to_keras(model.layers[-1], name, layout, len(shape) + 1)
        out_name = model.output_names[0]
        if self.nodes and self.nodes[-1].output[0] == final:
            self.nodes[-1].output[0] = out_name  # the graph output is the last node's output, as in tf2onnx
        else:
            self.nodes.append(self.h.make_node("Identity", [final], [out_name], name=f"{self.prefix}/{out_name}/Identity"))
        graph_out = self.h.make_tensor_value_info(out_name, self.TP.FLOAT, ["N"] + [int(d) for d in shape])
        g = self.h.make_graph(self.nodes, self.prefix, [graph_in], [graph_out], self.inits)
        m = self.h.make_model(g, opset_imports=[self.h.make_opsetid("", self.opset)],
                              producer_name="relprop keras2onnx_lrp")
        import onnx
        onnx.checker.check_model(m)
        return m

    def layer(self, layer, cls, srcs):
        cfg = layer.get_config()
        (t, layout, shape) = srcs[0]
        rank = len(shape) + 1
        spatial = shape[:-1] if layout == "keras" or rank <= 2 else shape[1:]
        if cls in ("Conv1D", "Conv2D", "SeparableConv1D", "SeparableConv2D"):
            if cfg.get("data_format", "channels_last") != "channels_last" or cfg.get("groups", 1) != 1:
                raise NotImplementedError(f"{layer.name}: data_format/groups")
            separable = cls.startswith("Separable")
            # (k..., cin, cout); a separable layer's depthwise kernel is (k..., cin, multiplier)
            kernel = layer.depthwise_kernel.numpy() if separable else layer.kernel.numpy()
            nd = kernel.ndim - 2
            t = self.to_cf(layer, t, layout, rank)
            cin_shape = [shape[-1]] + list(spatial) if layout == "keras" else list(shape)
            ks, st, dl = list(kernel.shape[:nd]), list(cfg["strides"]), list(cfg["dilation_rate"])
            if cfg["padding"] == "valid":
                pads, outsp = [0] * (2 * nd), [(n - ((k - 1) * d + 1)) // s + 1 for n, k, s, d in zip(cin_shape[1:], ks, st, dl)]
            elif cfg["padding"] == "same":
                pb = [_same_pads(n, k, s, d) for n, k, s, d in zip(cin_shape[1:], ks, st, dl)]
                pads = [p[0] for p in pb] + [p[1] for p in pb]
                outsp = [-(-n // s) for n, s in zip(cin_shape[1:], st)]
            elif cfg["padding"] == "causal" and nd == 1:
                # Keras pads (k - 1)·d zeros on the left, then convolves without padding.
                pads = [(ks[0] - 1) * dl[0], 0]
                outsp = [(cin_shape[1] - 1) // st[0] + 1]
            else:
                raise NotImplementedError(f"{layer.name}: padding {cfg['padding']!r}")
            if separable:
                # As tf2onnx writes SeparableConv2D: a grouped conv (output channel c·multiplier + m) in a nested
                # name scope, then the 1x1 pointwise conv with the bias in the layer itself.
                cin, mult = kernel.shape[nd], kernel.shape[nd + 1]
                dw = np.transpose(kernel, [nd, nd + 1] + list(range(nd))).reshape([cin * mult, 1] + ks).astype(np.float32)
                t = self.node(layer, "Conv", [t, self.const(layer, "depthwise_kernel", dw)], name_as="separable_conv/depthwise",
                              kernel_shape=ks, strides=st, dilations=dl, pads=pads, group=cin)
                pk = layer.pointwise_kernel.numpy()  # (1..., cin·multiplier, cout)
                kernel = pk
                ks, st, dl, pads = [1] * nd, [1] * nd, [1] * nd, [0] * (2 * nd)
            w = np.transpose(kernel, [nd + 1, nd] + list(range(nd))).astype(np.float32)
            inputs = [t, self.const(layer, "kernel", w)]
            if cfg["use_bias"]:
                inputs.append(self.const(layer, "bias", layer.bias.numpy().astype(np.float32)))
            y = self.node(layer, "Conv", inputs, kernel_shape=ks, strides=st, dilations=dl, pads=pads, group=1)
            y = self.activation(layer, y, cfg["activation"])
            return (y, "cf", [kernel.shape[-1]] + outsp)
        if cls == "DepthwiseConv1D":
            # A grouped conv, one group per input channel (output channel c·multiplier + m), as tf2onnx writes it.
            kernel = layer.depthwise_kernel.numpy()  # (k, cin, multiplier)
            k, cin, mult = kernel.shape
            t = self.to_cf(layer, t, layout, rank)
            n = shape[0] if layout == "keras" else shape[1]
            s_, d = cfg["strides"][0], cfg["dilation_rate"][0]
            if cfg["padding"] == "valid":
                pads, out = [0, 0], (n - ((k - 1) * d + 1)) // s_ + 1
            elif cfg["padding"] == "same":
                pads, out = list(_same_pads(n, k, s_, d)), -(-n // s_)
            else:
                raise NotImplementedError(f"{layer.name}: padding {cfg['padding']!r}")
            w = np.transpose(kernel, [1, 2, 0]).reshape(cin * mult, 1, k).astype(np.float32)
            inputs = [t, self.const(layer, "depthwise_kernel", w)]
            if cfg["use_bias"]:
                inputs.append(self.const(layer, "bias", layer.bias.numpy().astype(np.float32)))
            y = self.node(layer, "Conv", inputs, kernel_shape=[k], strides=[s_], dilations=[d], pads=pads, group=cin)
            return (self.activation(layer, y, cfg["activation"]), "cf", [cin * mult, out])
        if cls in ("ZeroPadding1D", "Cropping1D"):
            # On channels-first (N, C, L): a constant Pad, or a Slice of the length axis.
            t = self.to_cf(layer, t, layout, rank)
            c, n = (shape[-1], shape[0]) if layout == "keras" else (shape[0], shape[1])
            if cls == "ZeroPadding1D":
                a, b = cfg["padding"]
                pads = self.const(layer, "pads", np.array([0, 0, a, 0, 0, b], np.int64))
                return (self.node(layer, "Pad", [t, pads]), "cf", [c, n + a + b])
            a, b = cfg["cropping"]
            ints = lambda v: np.array(v, np.int64)
            y = self.node(layer, "Slice", [t, self.const(layer, "starts", ints([a])), self.const(layer, "ends", ints([n - b])),
                                           self.const(layer, "axes", ints([2]))])
            return (y, "cf", [c, n - a - b])
        if cls == "Permute":
            t = self.to_keras(layer, t, layout, rank)
            y = self.node(layer, "Transpose", [t], perm=[0] + list(cfg["dims"]))
            return (y, "keras", [int(d) for d in layer.output_shape[1:]])
        if cls == KERAS_BN:
            axis = cfg["axis"]
            axis = axis[0] if isinstance(axis, (list, tuple)) else axis
            if axis not in (-1, rank - 1) or (isinstance(axis, (list, tuple)) and len(cfg["axis"]) != 1):
                raise NotImplementedError(f"{layer.name}: BN axis {cfg['axis']}")
            c = shape[-1] if layout == "keras" or rank <= 2 else shape[0]
            gamma = layer.gamma.numpy() if layer.scale else np.ones(c, np.float32)
            beta = layer.beta.numpy() if layer.center else np.zeros(c, np.float32)
            t = self.to_cf(layer, t, layout, rank)
            y = self.node(layer, "BatchNormalization",
                          [t, self.const(layer, "gamma", gamma.astype(np.float32)),
                           self.const(layer, "beta", beta.astype(np.float32)),
                           self.const(layer, "moving_mean", layer.moving_mean.numpy().astype(np.float32)),
                           self.const(layer, "moving_variance", layer.moving_variance.numpy().astype(np.float32))],
                          epsilon=float(cfg["epsilon"]))
            cfshape = shape if layout == "cf" or rank <= 2 else [shape[-1]] + list(spatial)
            return (y, "cf" if rank > 2 else layout, cfshape)
        if cls in ("MaxPooling1D", "AveragePooling1D", "MaxPooling2D", "AveragePooling2D"):
            nd = rank - 2
            ks, st = list(cfg["pool_size"]), list(cfg["strides"])
            t = self.to_cf(layer, t, layout, rank)
            if cfg["padding"] == "valid":
                pads, outsp = [0] * (2 * nd), [(n - k) // s + 1 for n, k, s in zip(spatial, ks, st)]
            else:
                pb = [_same_pads(n, k, s) for n, k, s in zip(spatial, ks, st)]
                pads = [p[0] for p in pb] + [p[1] for p in pb]
                outsp = [-(-n // s) for n, s in zip(spatial, st)]
            op = "MaxPool" if cls.startswith("Max") else "AveragePool"
            y = self.node(layer, op, [t], kernel_shape=ks, strides=st, pads=pads)
            c = shape[-1] if layout == "keras" else shape[0]
            return (y, "cf", [c] + outsp)
        if cls in ("UpSampling1D", "UpSampling2D"):
            if cls == "UpSampling2D" and cfg.get("interpolation", "nearest") != "nearest":
                raise NotImplementedError(f"{layer.name}: interpolation {cfg['interpolation']!r}")
            f = [cfg["size"]] if cls == "UpSampling1D" else list(cfg["size"])
            t = self.to_cf(layer, t, layout, rank)
            scales = self.const(layer, "scales", np.array([1.0, 1.0] + [float(v) for v in f], np.float32))
            y = self.node(layer, "Resize", [t, "", scales], mode="nearest", coordinate_transformation_mode="asymmetric",
                          nearest_mode="floor")
            c = shape[-1] if layout == "keras" else shape[0]
            return (y, "cf", [c] + [n * k for n, k in zip(spatial, f)])
        if cls in ("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D"):
            if cfg.get("keepdims"):
                raise NotImplementedError(f"{layer.name}: keepdims")
            t = self.to_cf(layer, t, layout, rank)
            op = "GlobalAveragePool" if "Average" in cls else "GlobalMaxPool"
            y = self.node(layer, op, [t])
            axes = self.const(layer, "squeeze_axes", np.arange(2, rank, dtype=np.int64))
            y = self.node(layer, "Squeeze", [y, axes])
            c = shape[-1] if layout == "keras" else shape[0]
            return (y, "keras", [c])
        if cls == "Flatten":
            t = self.to_keras(layer, t, layout, rank)
            n = int(np.prod(shape))
            y = self.node(layer, "Reshape", [t, self.const(layer, "shape", np.array([-1, n], np.int64))])
            return (y, "keras", [n])
        if cls == "Dense":
            # On rank 3+, Keras contracts the last (channels-last) axis: ONNX MatMul broadcasts the same way.
            t = self.to_keras(layer, t, layout, rank) if rank > 2 else t
            y = self.node(layer, "MatMul", [t, self.const(layer, "kernel", layer.kernel.numpy().astype(np.float32))])
            if cfg["use_bias"]:
                y = self.node(layer, "Add", [y, self.const(layer, "bias", layer.bias.numpy().astype(np.float32))])
            y = self.activation(layer, y, cfg["activation"])
            return (y, "keras", [int(d) for d in layer.output_shape[1:]])
        if cls == "LayerNormalization":
            # TensorFlow's own ops (tf.nn.moments, tf.nn.batch_normalization), as tf2onnx writes them: relprop
            # reads them back as one LayerNorm layer.
            axes = cfg["axis"] if isinstance(cfg["axis"], (list, tuple)) else [cfg["axis"]]
            axes = sorted(a if a >= 0 else rank + a for a in axes)
            t = self.to_keras(layer, t, layout, rank)
            kshape = [int(d) for d in layer.output_shape[1:]]
            pshape = [kshape[a - 1] if a in axes else 1 for a in range(1, rank)]
            f32 = lambda v: np.asarray(v, np.float32)
            mean = self.node(layer, "ReduceMean", [t], name_as="moments/mean", axes=axes, keepdims=1)
            d = self.node(layer, "Sub", [t, mean], name_as="moments/SquaredDifference")
            var = self.node(layer, "ReduceMean", [self.node(layer, "Mul", [d, d], name_as="moments/square")],
                            name_as="moments/variance", axes=axes, keepdims=1)
            ve = self.node(layer, "Add", [var, self.const(layer, "epsilon", f32(cfg["epsilon"]))], name_as="batchnorm/add")
            s = self.node(layer, "Reciprocal", [self.node(layer, "Sqrt", [ve], name_as="batchnorm/Rsqrt")],
                          name_as="batchnorm/Rsqrt_recip")
            if cfg["scale"]:
                s = self.node(layer, "Mul", [s, self.const(layer, "gamma", f32(layer.gamma.numpy()).reshape(pshape))],
                              name_as="batchnorm/mul")
            ms = self.node(layer, "Mul", [mean, s], name_as="batchnorm/mul_2")
            if cfg["center"]:
                shift = self.node(layer, "Sub", [self.const(layer, "beta", f32(layer.beta.numpy()).reshape(pshape)), ms],
                                  name_as="batchnorm/sub")
            else:
                shift = self.node(layer, "Neg", [ms], name_as="batchnorm/neg")
            xs = self.node(layer, "Mul", [t, s], name_as="batchnorm/mul_1")
            return (self.node(layer, "Add", [xs, shift], name_as="batchnorm/add_1"), "keras", kshape)
        if cls == "PReLU":
            # As tf2onnx writes Keras' relu(x) - alpha * relu(-x): relprop reads it back as one PRelu layer.
            t = self.to_keras(layer, t, layout, rank)
            neg = self.node(layer, "Relu", [self.node(layer, "Neg", [t], name_as="Neg_1")], name_as="Relu_1")
            m = self.node(layer, "Mul", [neg, self.const(layer, "neg_alpha", -layer.alpha.numpy().astype(np.float32))],
                          name_as="mul")
            y = self.node(layer, "Add", [self.node(layer, "Relu", [t]), m], name_as="add")
            return (y, "keras", [int(d) for d in layer.output_shape[1:]])
        if cls == "ReLU":
            if cfg.get("max_value") is not None or cfg.get("negative_slope", 0) != 0 or cfg.get("threshold", 0) != 0:
                raise NotImplementedError(f"{layer.name}: ReLU options")
            return (self.node(layer, "Relu", [t]), layout, shape)
        if cls == "Activation":
            return (self.activation(layer, t, cfg["activation"]), layout, shape)
        if cls == "LeakyReLU":
            return (self.node(layer, "LeakyRelu", [t], alpha=float(cfg["alpha"])), layout, shape)
        if cls in NO_OP_LAYERS:
            # an Identity node of the layer's own: signxai counts the layer for until_layer_idx
            return (self.node(layer, "Identity", [t]), layout, shape)
        if cls in ("Add", "Average"):
            lay = "cf" if any(s[1] == "cf" and len(s[2]) > 1 for s in srcs) else "keras"
            names = [self.to_cf(layer, s[0], s[1], rank) if lay == "cf" else s[0] for s in srcs]
            y = names[0]
            for other in names[1:]:
                y = self.node(layer, "Add", [y, other])
            if cls == "Average":  # Keras: the sum, then one division
                y = self.node(layer, "Div", [y, self.const(layer, "count", np.array(len(names), np.float32))])
            return (y, lay, _cf_shape(srcs[0][1], srcs[0][2]) if lay == "cf" else shape)
        if cls == "Concatenate":
            names = [self.to_keras(layer, s[0], s[1], rank) for s in srcs]
            axis = cfg["axis"] if cfg["axis"] >= 0 else rank + cfg["axis"]
            return (self.node(layer, "Concat", names, axis=axis), "keras", [int(d) for d in layer.output_shape[1:]])
        raise NotImplementedError(f"{layer.name}: layer class {cls} is not supported by the direct writer")


def export_direct(model, opset=13):
    return _Writer(model, opset).write()


# ------------------------------------------------------------------------------------------------ checks
# Layers that do nothing at inference. tf2onnx drops them, but signxai counts them as layers for until_layer_idx.
NO_OP_LAYERS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout", "GaussianDropout",
                "GaussianNoise", "ActivityRegularization")


def needs_direct(model):
    for layer in model.layers:
        cls = layer.__class__.__name__
        if cls.endswith("1D"):
            return True
        if cls == KERAS_BN and len(layer.input_shape) != 4:
            return True  # Keras uses the unfused kernel: tf2onnx lowers it to Mul + Add
        if cls in NO_OP_LAYERS:
            return True  # tf2onnx would drop it
    return False


def count_keras_bn(model):
    return sum(1 for l in model.layers if l.__class__.__name__ == KERAS_BN)


def check_export(model, proto, tol=1e-5, inputs=(), seed=0, keep_bn=True):
    """ONNX Runtime vs Keras; returns the worst absolute difference. Raises if above tol or (keep_bn) a BN was
    lost."""
    import onnxruntime as ort
    n_bn = sum(1 for n in proto.graph.node if n.op_type == "BatchNormalization")
    if keep_bn and n_bn != count_keras_bn(model):
        raise RuntimeError(f"ONNX has {n_bn} BatchNormalization nodes, Keras {count_keras_bn(model)} BN layers")
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    iname = sess.get_inputs()[0].name
    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    xs = [rng.uniform(-1, 1, size=(4,) + shape).astype(np.float32)] + [np.asarray(x, np.float32) for x in inputs]
    worst = 0.0
    for x in xs:
        want = model(x, training=False).numpy()
        got = sess.run(None, {iname: x})[0]
        if got.shape != want.shape:
            raise RuntimeError(f"ONNX output shape {got.shape} != Keras {want.shape}")
        # absolute for outputs up to 1, relative to the largest output beyond (deep models' large logits)
        worst = max(worst, float(np.abs(got - want).max() / max(1.0, np.abs(want).max())))
    if not worst <= tol:
        raise RuntimeError(f"ONNX Runtime differs from Keras by {worst:.3e} (> {tol:g}; relative to outputs above 1)")
    return worst


def export(model, out_path=None, opset=13, tol=1e-5, check_inputs=(), plain=False):
    """Export a loaded Keras model; returns (onnx ModelProto, method, worst |ORT - Keras|). plain=True: plain
    tf2onnx, which may fold BN into a conv or lower it to Mul + Add (what relprop must also import)."""
    if plain:
        proto = export_tf2onnx(model, opset, plain=True)
        worst = check_export(model, proto, tol=tol, inputs=check_inputs, keep_bn=False)
        if out_path:
            import onnx
            onnx.save(proto, out_path)
        return proto, "plain tf2onnx", worst
    method = "direct" if needs_direct(model) else "tf2onnx"
    try:
        proto = export_direct(model, opset) if method == "direct" else export_tf2onnx(model, opset)
    except NotImplementedError as e:
        if any(l.__class__.__name__.endswith("1D") for l in model.layers):
            raise
        # only a no-op layer asked for the direct writer, which lacks another layer: tf2onnx drops the no-op layers
        print(f"warning: {e}; falling back to tf2onnx, which drops {', '.join(NO_OP_LAYERS[:1])}-like layers "
              "(until_layer_idx above them then counts one layer less than signxai)", file=sys.stderr)
        method, proto = "tf2onnx", export_tf2onnx(model, opset)
    if method == "tf2onnx":
        n_bn = sum(1 for n in proto.graph.node if n.op_type == "BatchNormalization")
        if n_bn != count_keras_bn(model):  # e.g. BN after Dense: tf2onnx lowered it; try the direct writer
            method, proto = "direct", export_direct(model, opset)
    worst = check_export(model, proto, tol=tol, inputs=check_inputs)
    if out_path:
        import onnx
        d = os.path.dirname(os.path.abspath(out_path))
        os.makedirs(d, exist_ok=True)
        onnx.save(proto, out_path)
    return proto, method, worst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="Keras model (.h5 or SavedModel/.keras), without softmax")
    ap.add_argument("out", help="output .onnx path")
    ap.add_argument("--opset", type=int, default=13)
    ap.add_argument("--tol", type=float, default=1e-5, help="max |ONNX Runtime - Keras| allowed (default 1e-5)")
    ap.add_argument("--check-input", action="append", default=[], help=".npy input batch to check as well")
    ap.add_argument("--plain", action="store_true", help="plain tf2onnx (default optimizers; BN may be folded or lowered)")
    a = ap.parse_args(argv)
    from tensorflow import keras
    model = keras.models.load_model(a.model, compile=False)
    inputs = [np.load(p) for p in a.check_input]
    proto, method, worst = export(model, a.out, opset=a.opset, tol=a.tol, check_inputs=inputs, plain=a.plain)
    ops = {}
    for n in proto.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    print(f"{a.out}: {method} export, opset {a.opset}, max |ORT - Keras| = {worst:.2e}, ops {ops}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
