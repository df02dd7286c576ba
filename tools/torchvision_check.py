"""Import check on real PyTorch architectures: torchvision classifiers with seeded random weights (BN statistics
moved off identity) exported by torch.onnx, explained by relprop's CLI; relprop's logits (`--logits`) must match
torch's and the relevance must be finite.

This checks import and forward fidelity only (torch has no signxai maps to compare with); the rules themselves
are checked against signxai by the goldens and tools/signxai_diffcheck.py.

Run with the peers venv (`cargo xtask bench --vs-zennit` creates it) plus onnx and onnxscript:
  pip install --target /tmp/onnxpkg onnx onnxscript onnx_ir protobuf ml_dtypes typing_extensions
  cargo build --release --bin relprop
  PYTHONPATH=/tmp/onnxpkg .deps/venv-peers/bin/python tools/torchvision_check.py [--dynamo] [--models a,b]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch
import torchvision.models as M

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["resnet18", "vgg11_bn", "alexnet", "squeezenet1_1", "densenet121", "mobilenet_v2", "mobilenet_v3_small",
          "efficientnet_b0", "efficientnet_v2_s", "shufflenet_v2_x0_5", "googlenet", "inception_v3", "mnasnet0_5",
          "regnet_x_400mf", "regnet_y_400mf", "resnext50_32x4d", "wide_resnet50_2", "convnext_tiny"]
# Input side: the adaptive pools of VGG and AlexNet need 224 to export; InceptionV3 needs at least 75.
SIZE = {"vgg11_bn": 224, "alexnet": 224, "inception_v3": 75}
TOL = 1e-5


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--relprop", default=os.path.join(ROOT, "target", "release", "relprop"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--dynamo", action="store_true", help="the default (dynamo) exporter instead of TorchScript")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            kw = {"weights": None}
            if name in ("googlenet", "inception_v3"):
                kw.update(aux_logits=False, init_weights=True)
            m = getattr(M, name)(**kw).eval()
            for mod in m.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.running_mean.uniform_(-0.1, 0.1)
                    mod.running_var.uniform_(0.8, 1.2)
            size = SIZE.get(name, 64)
            x = torch.randn(2, 3, size, size)
            with torch.no_grad():
                ref = m(x).numpy()
            path, xin = os.path.join(tmp, f"{name}.onnx"), os.path.join(tmp, "x.npy")
            try:
                torch.onnx.export(m, (x,), path, dynamo=a.dynamo, opset_version=17, input_names=["x"], output_names=["y"])
            except Exception as e:  # noqa: BLE001 - an exporter failure is torch's, reported and skipped
                print(f"{name:20s} torch export failed: {str(e).splitlines()[0][:100]}")
                continue
            np.save(xin, x.numpy())
            out, logits = os.path.join(tmp, "r.npy"), os.path.join(tmp, "l.npy")
            p = subprocess.run([a.relprop, "explain", "--model", path, "--input", xin, "--method", "lrp_epsilon_0_1",
                                "--output", out, "--logits", logits], capture_output=True, text=True)
            if p.returncode != 0:
                bad += 1
                print(f"{name:20s} relprop error: {p.stderr.strip()[:300]}")
                continue
            err = float(np.abs(np.load(logits) - ref).max() / np.abs(ref).max())
            finite = bool(np.isfinite(np.load(out)).all())
            ok = err <= TOL and finite
            bad += not ok
            print(f"{name:20s} logits within {err:.1e} of torch; relevance finite: {finite} {'ok' if ok else 'MISMATCH'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
