"""Import fixtures exported by PyTorch itself (not relprop), for crates/relprop-onnx/tests/torch_exports.rs.

One small CNN (Conv, BN2d, ReLU, MaxPool, `x.view(x.size(0), -1)`, BN1d, Linear) with random weights and BN
statistics, exported twice with a dynamic batch axis:
  * torch_view_legacy.onnx: the TorchScript exporter (`dynamo=False`), which writes the view as
    Shape -> Gather -> Unsqueeze -> Concat -> Reshape;
  * torch_view_dynamo.onnx + torch_view_dynamo.onnx.data: the default exporter since torch 2.9 (`dynamo=True`),
    which keeps the weights in an external data file (and folds BN2d into the conv).
torch_view_input.npy holds a batch of 3 inputs and torch_view_logits.npy torch's logits for it.
torch_ops.onnx (TorchScript exporter) holds other common idioms (see `Ops`); torch_ops_logits.npy its logits on
the same inputs. torch_blocks.onnx / torch_blocks_logits.npy: MobileNetV3 / ShuffleNetV2 / decoder idioms (`Blocks`).
torch_restore.onnx / torch_restore_logits.npy: image-restoration idioms (`Restore`). torch_pad_grad.onnx: a network
that is linear in its input (`PadGrad`), with torch_pad_grad_input.npy and torch_pad_grad_reference.npy, the input
times torch's gradient of each sample's largest logit: for such a network LRP-Z without bias equals that product,
so it checks relevance routed through reflect and edge pads against torch's autograd.

Run with the peers venv (`cargo xtask bench --vs-zennit` creates it) plus onnx and onnxscript:
  pip install --target /tmp/onnxpkg onnx onnxscript onnx_ir protobuf ml_dtypes typing_extensions
  PYTHONPATH=/tmp/onnxpkg .deps/venv-peers/bin/python tools/torch_fixtures.py
Versions used for the committed files: torch 2.13.0, onnx 1.23.2, onnxscript 0.7.2.
"""
import os

import numpy as np
import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "relprop-onnx", "tests", "data")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(4)
        self.bn1 = nn.BatchNorm1d(64)
        self.fc = nn.Linear(64, 5)

    def forward(self, x):
        x = torch.relu(self.bn2(self.conv(x)))
        x = nn.functional.max_pool2d(x, 2)
        x = x.view(x.size(0), -1)
        return self.fc(self.bn1(x))


class Ops(nn.Module):
    """Common PyTorch idioms: ReLU6 (Clip), slicing (Slice), torch.cat (Concat), x.mean((2, 3)) (ReduceMean),
    in-model normalisation (Sub/Div by per-channel constants)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.5, 1.5, 2.0]).view(1, 3, 1, 1))
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 2, 1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        x = (x - self.mean) / self.std
        a = nn.functional.relu6(self.a(x))[:, :, 1:, :-1]
        b = torch.relu(self.b(x))[:, :, 1:, :-1]
        return self.fc(torch.cat([a, b], 1).mean((2, 3)))


class Blocks(nn.Module):
    """Idioms of MobileNetV3, ShuffleNetV2 and decoders: Hardswish (HardSwish), SiLU (Sigmoid + Mul), a
    squeeze-and-excitation gate (adaptive_avg_pool2d, Hardsigmoid, a broadcasting Mul), torch.chunk (Slices), the
    channel shuffle (5-D view / transpose / view), torch.maximum (Max), nn.Upsample (Resize, nearest) and
    ConvTranspose2d with output_padding."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.se1 = nn.Conv2d(8, 4, 1)
        self.se2 = nn.Conv2d(4, 8, 1)
        self.branch = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.tconv = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1)
        self.other = nn.Conv2d(8, 6, 1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        x = nn.functional.hardswish(self.stem(x))                                      # 8 x 4 x 4
        g = nn.functional.adaptive_avg_pool2d(x, 1)
        g = nn.functional.hardsigmoid(self.se2(torch.relu(self.se1(g))))
        x = x * g
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a, nn.functional.silu(self.branch(b))], 1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)          # channel shuffle
        t = self.tconv(x)                                                              # 6 x 8 x 8
        u = self.other(self.up(x))                                                     # 6 x 8 x 8
        x = torch.maximum(t, u)
        return self.fc(x.mean((2, 3)))


class Restore(nn.Module):
    """Idioms of image-restoration and style-transfer nets: ReflectionPad2d and ReplicationPad2d (Pad reflect / edge,
    the pads computed by an integer constant chain), InstanceNorm2d with affine parameters (InstanceNormalization),
    GroupNorm (a reshape around InstanceNormalization, then Mul / Add), PixelShuffle (DepthToSpace, CRD) and
    PixelUnshuffle."""

    def __init__(self):
        super().__init__()
        self.reflect = nn.ReflectionPad2d((1, 2, 2, 1))
        self.conv = nn.Conv2d(3, 8, 3)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.edge = nn.ReplicationPad2d(1)
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.gnorm = nn.GroupNorm(2, 8)
        self.shuffle = nn.PixelShuffle(2)
        self.unshuffle = nn.PixelUnshuffle(2)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = torch.relu(self.inorm(self.conv(self.reflect(x))))                        # 8 x 8 x 9
        x = torch.relu(self.gnorm(self.conv2(self.edge(x))))                          # 8 x 8 x 9
        x = self.unshuffle(self.shuffle(x)[:, :, :, :-2])                             # 8 x 8 x 8
        return self.fc(x.mean((2, 3)))


class PadGrad(nn.Module):
    """Linear in its input (no bias, no activation): reflect pad, conv, edge pad, conv, linear."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.ReflectionPad2d((2, 1, 1, 3)), nn.Conv2d(3, 4, 3, bias=False), nn.ReplicationPad2d((0, 2, 1, 0)),
                                 nn.Conv2d(4, 4, 3, stride=2, bias=False), nn.Flatten(), nn.Linear(4 * 5 * 4, 5, bias=False))

    def forward(self, x):
        return self.net(x)


def main():
    torch.manual_seed(7)
    net = Net().eval()
    with torch.no_grad():
        for bn in (net.bn1, net.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.2)
            bn.running_mean.normal_(0, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        y = net(x)
    os.makedirs(OUT, exist_ok=True)
    np.save(os.path.join(OUT, "torch_view_input.npy"), x.numpy().astype(np.float32))
    np.save(os.path.join(OUT, "torch_view_logits.npy"), y.numpy().astype(np.float32))
    torch.onnx.export(net, (x,), os.path.join(OUT, "torch_view_legacy.onnx"), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}}, opset_version=17, dynamo=False)
    torch.onnx.export(net, (x,), os.path.join(OUT, "torch_view_dynamo.onnx"), input_names=["x"], output_names=["logits"],
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, dynamo=True, external_data=True)
    ops = Ops().eval()
    with torch.no_grad():
        y = ops(x)
    np.save(os.path.join(OUT, "torch_ops_logits.npy"), y.numpy().astype(np.float32))
    torch.onnx.export(ops, (x,), os.path.join(OUT, "torch_ops.onnx"), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}}, opset_version=17, dynamo=False)
    blocks = Blocks().eval()
    with torch.no_grad():
        y = blocks(x)
    np.save(os.path.join(OUT, "torch_blocks_logits.npy"), y.numpy().astype(np.float32))
    torch.onnx.export(blocks, (x,), os.path.join(OUT, "torch_blocks.onnx"), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}}, opset_version=17, dynamo=False)
    restore = Restore().eval()
    with torch.no_grad():
        for norm in (restore.inorm, restore.gnorm):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0, 0.2)
        y = restore(x)
    np.save(os.path.join(OUT, "torch_restore_logits.npy"), y.numpy().astype(np.float32))
    torch.onnx.export(restore, (x,), os.path.join(OUT, "torch_restore.onnx"), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}}, opset_version=13, dynamo=False)
    grad = PadGrad().eval()
    xg = torch.randn(2, 3, 8, 7)
    xr = xg.clone().requires_grad_(True)
    out = grad(xr)
    out.gather(1, out.argmax(1, keepdim=True)).sum().backward()
    np.save(os.path.join(OUT, "torch_pad_grad_input.npy"), xg.numpy().astype(np.float32))
    np.save(os.path.join(OUT, "torch_pad_grad_reference.npy"), (xr.grad * xg).numpy().astype(np.float32))
    torch.onnx.export(grad, (xg,), os.path.join(OUT, "torch_pad_grad.onnx"), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}}, opset_version=13, dynamo=False)


if __name__ == "__main__":
    main()
