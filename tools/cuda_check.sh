#!/usr/bin/env bash
# The tch CUDA check (docs/cuda.md), run on a GPU machine with PyTorch installed, from the root of a copy of the
# repository holding the bundle that tools/cuda_bundle.sh made (.cudacheck/). Writes its results to $OUT.
#  1. the whole conformance suite on ndarray (CPU) and tch (CUDA), with their cross-backend agreement;
#  2. VGG16 and ResNet50 timings on the GPU (median of 10 runs, batch 1 and 8), and ndarray's relevance sums
#     for the same inputs (they must match tch's).
set -u
OUT=${OUT:-/tmp/cuda-check}; mkdir -p "$OUT"
TL=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')/lib
export LD_LIBRARY_PATH=$TL
nvidia-smi -L; python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
B=$PWD/.cudacheck
# The binaries find specs/, golden/ and zoo/ under the folder they were built in.
mkdir -p "$(dirname "$(cat "$B/built-in")")" && ln -sfn "$PWD" "$(cat "$B/built-in")"
ldd "$B/relprop-conform" | grep "not found" && { echo "libraries missing"; exit 2; }
mkdir -p zoo
for m in vgg16 resnet50; do "$B/relprop-bench" zoo $m --output zoo/$m.onnx || exit 3; done
t0=$(date +%s)
timeout 240 "$B/relprop-conform" --backend ndarray,tch --device cuda --report "$OUT/conform-cuda.html" > "$OUT/conform-cuda.txt" 2> "$OUT/conform-cuda.err"
echo "conform rc=$? in $(( $(date +%s) - t0 )) s"
tail -2 "$OUT/conform-cuda.txt"
grep -E "^FAIL|DISAGREE|not available" "$OUT/conform-cuda.txt" | head -20
for m in vgg16 resnet50; do for a in forward LRPEpsilon LRPAlpha1Beta0 LRPSequentialCompositeB; do for b in 1 8; do
  timeout 40 "$B/relprop-bench" rss --model $m --backend tch --device cuda --analyzer $a --batch $b --repeat 10 --zoo zoo
done; done; done | tee "$OUT/bench-cuda.jsonl"
for m in vgg16 resnet50; do for a in LRPEpsilon LRPSequentialCompositeB; do
  timeout 40 "$B/relprop-bench" rss --model $m --backend ndarray --analyzer $a --batch 1 --zoo zoo
done; done | tee "$OUT/bench-cpu.jsonl"
