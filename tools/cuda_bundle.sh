#!/usr/bin/env bash
# Build relprop's conformance runner, benchmark binary and CLI against a CUDA libtorch, for a GPU machine that has
# PyTorch installed but no Rust toolchain and no network (how the tch CUDA path was checked: docs/cuda.md).
#
#   tools/cuda_bundle.sh [TORCH_VERSION TCH_VERSION TORCH_LIB_ON_TARGET]
#
# TORCH_VERSION must be the target's torch (a CUDA build from PyPI) and TCH_VERSION the tch release made for it
# (tch 0.24 for torch 2.11; relprop itself pins tch 0.26 / torch 2.13). The binaries link the wheel's libtorch here
# and load the target's own copy at run time (rpath TORCH_LIB_ON_TARGET). Everything lands in git-ignored folders:
# .deps/cuda-<version>/ (libtorch, a copy of the sources with the tch pin changed, the build) and .cudacheck/ (the
# three binaries and tools/cuda_check.sh, about 16 MB, what travels to the GPU machine). Idempotent.
set -euo pipefail
TORCH=${1:-2.11.0}; TCH=${2:-0.24.0}; TL=${3:-/opt/torch/.venv/lib/python3.12/site-packages/torch/lib}
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
DEPS=$ROOT/.deps/cuda-$TORCH
LT=$DEPS/libtorch
mkdir -p "$DEPS"
if [ ! -f "$LT/build-version" ]; then
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.11 --abi cp311 --implementation cp \
    --platform manylinux_2_28_x86_64 "torch==$TORCH" -d "$DEPS/wheel"
  python3 - "$DEPS/wheel" "$LT" <<'PY'
import os, shutil, sys, zipfile
wheel_dir, out = sys.argv[1], sys.argv[2]
(name,) = [n for n in os.listdir(wheel_dir) if n.endswith(".whl")]
keep = {f"torch/lib/{n}" for n in ["libtorch_cpu.so", "libc10.so", "libtorch.so", "libtorch_cuda.so", "libc10_cuda.so"]}
with zipfile.ZipFile(os.path.join(wheel_dir, name)) as z:
    for i in z.infolist():
        if i.is_dir() or not (i.filename.startswith("torch/include/") or i.filename in keep):
            continue
        dest = os.path.join(out, i.filename[len("torch/"):])
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(i) as s, open(dest, "wb") as d:
            shutil.copyfileobj(s, d, 1 << 20)
PY
  echo "$TORCH" > "$LT/build-version"
  rm -rf "$DEPS/wheel"
fi
# The sources as they are now (tracked files), with the tch pin moved to the target's torch.
rm -rf "$DEPS/src" && mkdir -p "$DEPS/src"
git -C "$ROOT" ls-files -z | (cd "$ROOT" && tar --null -T - -cf -) | tar -xf - -C "$DEPS/src"
sed -i "s/tch = { version = \"=[0-9.]*\"/tch = { version = \"=$TCH\"/" "$DEPS/src/crates/relprop-tch/Cargo.toml"
# --target keeps RUSTFLAGS off build scripts (they run here, where libtorch_cuda's CUDA libraries are absent).
(cd "$DEPS/src" && LIBTORCH=$LT CARGO_TARGET_DIR=$DEPS/target \
  RUSTFLAGS="-C link-arg=-Wl,--allow-shlib-undefined -C link-arg=-L$LT/lib -C link-arg=-Wl,--no-as-needed,-ltorch_cuda,-lc10_cuda,--as-needed -C link-arg=-Wl,-rpath,$TL" \
  cargo build --release --target x86_64-unknown-linux-gnu -p relprop-conform -p relprop-bench -p relprop-cli \
    --features relprop-conform/tch,relprop-bench/tch,relprop-cli/tch)
mkdir -p "$ROOT/.cudacheck"
cp "$DEPS"/target/x86_64-unknown-linux-gnu/release/{relprop-conform,relprop-bench,relprop} "$ROOT/tools/cuda_check.sh" "$ROOT/.cudacheck/"
echo "$DEPS/src" > "$ROOT/.cudacheck/built-in"
echo "cuda bundle: $ROOT/.cudacheck ($(du -sh "$ROOT/.cudacheck" | cut -f1)); on the GPU machine, from a copy of the repo: bash .cudacheck/cuda_check.sh"
