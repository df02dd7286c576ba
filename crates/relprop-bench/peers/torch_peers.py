"""Time the PyTorch LRP peers (zennit, captum) on VGG16 / ResNet50 for `cargo xtask bench --vs-zennit`.

Run by xtask in .deps/venv-peers (torch 2.13.0 CPU, zennit 1.0.0, captum; requirements-torch.txt). The models are
torchvision's VGG16 and ResNet50 (v1.5, like relprop's zoo) with seeded random weights, in eval mode, 2 threads.
zennit: a composite registered once, then `attributor(x, grad)` timed; captum: `LRP(model).attribute(x, target)`.
Prints one JSON object.
"""
import argparse
import json
import statistics
import sys
import time
import warnings

import torch
import torchvision

warnings.filterwarnings("ignore")


def build(name):
    torch.manual_seed(0)
    m = {"vgg16": torchvision.models.vgg16, "resnet50": torchvision.models.resnet50}[name](weights=None)
    return m.eval()


def zennit_composite(kind, model_name):
    from zennit.composites import EpsilonAlpha2Beta1, EpsilonPlus, LayerMapComposite
    from zennit.rules import Epsilon, Norm, Pass
    from zennit.types import Activation, AvgPool, Convolution, Linear
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    canon = [ResNetCanonizer()] if model_name == "resnet50" else [VGGCanonizer()]
    if kind == "epsilon":
        layer_map = [(Activation, Pass()), (AvgPool, Norm()), (Convolution, Epsilon(0.1)), (Linear, Epsilon(0.1))]
        return LayerMapComposite(layer_map=layer_map, canonizers=canon)
    if kind == "epsilon_plus":
        return EpsilonPlus(canonizers=canon)
    return EpsilonAlpha2Beta1(canonizers=canon)


def time_it(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="vgg16,resnet50")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from zennit.attribution import Gradient
    from captum.attr import LRP
    import captum
    import zennit

    rows = []

    def add(peer, mname, label, secs):
        rows.append({"peer": peer, "model": mname, "analyzer": label, "batch": 1, "seconds": secs, "runs": a.repeat})
        print(f"{peer} {mname} {label}: {secs:.3f} s", file=sys.stderr)

    for mname in a.models.split(","):
        model = build(mname)
        x = torch.empty(1, 3, 224, 224).uniform_(-1, 1, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            target = int(model(x).argmax())
            add("torch", mname, "forward", time_it(lambda: model(x), a.repeat))
        grad = torch.zeros(1, 1000)
        grad[0, target] = 1.0
        # relprop label -> zennit composite: epsilon everywhere; EpsilonPlus (ZPlus = alpha1beta0 on convs);
        # EpsilonAlpha2Beta1 (relprop's LRPSequentialCompositeB: alpha2beta1 on convs, epsilon on dense layers).
        for label, kind in (("LRPEpsilon", "epsilon"), ("LRPAlpha1Beta0", "epsilon_plus"),
                            ("LRPSequentialCompositeB", "alpha2beta1")):
            with Gradient(model=model, composite=zennit_composite(kind, mname)) as attributor:
                add("zennit", mname, label, time_it(lambda: attributor(x.clone().requires_grad_(True), grad), a.repeat))
        if mname == "vgg16":  # captum's LRP has no rule for BatchNorm and refuses ResNet50
            lrp = LRP(model)
            add("captum", mname, "LRPEpsilon",
                time_it(lambda: lrp.attribute(x.clone().requires_grad_(True), target=target), a.repeat))
    versions = {"torch": torch.__version__, "zennit": getattr(zennit, "__version__", "1.0.0"),
                "captum": captum.__version__, "torchvision": torchvision.__version__, "python": sys.version.split()[0]}
    print(json.dumps({"rows": rows, "versions": versions, "threads": a.threads}))


if __name__ == "__main__":
    main()
