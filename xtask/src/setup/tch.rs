//! `cargo xtask setup tch`: a curated, CPU-only `LIBTORCH` folder for `tch = "=0.26.0"` (libtorch 2.13.0),
//! assembled from PyPI wheels (docs: /work/shared/reference/DEPS.md, crates/relprop-tch/README.md).
//!
//! `.deps/libtorch/` gets
//! - `include/` (the torch wheel's `torch/include/`, headers for torch-sys' C++ wrapper),
//! - `lib/`: `libtorch_cpu.so`, `libc10.so`, `libgomp.so.1` (run time), `libtorch.so` (link time) from the
//!   torch wheel; `libcudart.so.13` (nvidia-cuda-runtime) and `libcupti.so.13` (nvidia-cuda-cupti), which
//!   libtorch_cpu.so has undefined symbols from and which load fine without a GPU or driver. Never
//!   `libtorch_cuda.so`: torch-sys links it when present, dragging in cuDNN, cuBLAS...
//! - `build-version` (`2.13.0`), read by torch-sys,
//! - `.relprop-complete`, the marker written last: when it holds this recipe, setup does nothing.
//!
//! Wheels are downloaded with pip (hash-pinned through a requirements file, so pip checks every byte) into
//! `.deps/cache/tch-wheels/`, only the members above are extracted (Python's zipfile), everything is staged in
//! `.deps/libtorch.partial/` and renamed into place at the end, and the wheels (540 MB, the torch one 526 MB) are
//! deleted afterwards: a complete `.deps/libtorch` never needs them again.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util;

/// torch-sys 0.26 expects exactly this libtorch.
const TORCH_VERSION: &str = "2.13.0";

/// (pip requirement, sha256 of the wheel). All three resolve to exactly one wheel for the platform tags below.
const WHEELS: &[(&str, &str)] = &[
    ("torch==2.13.0", "60fcdcb2f3876e21146cb4524ef06397d727ca9ad5f020818547e25075fe3cb7"),
    ("nvidia-cuda-runtime==13.0.96", "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"),
    ("nvidia-cuda-cupti==13.0.85", "4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8"),
];

/// pip 23 does not widen one `--platform` to lower manylinux levels.
const PLATFORMS: &[&str] = &["manylinux_2_28_x86_64", "manylinux_2_25_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"];

/// What is extracted: (wheel name prefix, member, destination relative to the LIBTORCH folder). A member ending
/// in '/' is a folder (its files go below the destination); one starting with `*/` is found by its file name
/// anywhere in the wheel (the nvidia wheels' layout changed between CUDA releases).
const MEMBERS: &[(&str, &str, &str)] = &[
    ("torch-", "torch/include/", "include"),
    ("torch-", "torch/lib/libtorch_cpu.so", "lib/libtorch_cpu.so"),
    ("torch-", "torch/lib/libc10.so", "lib/libc10.so"),
    ("torch-", "torch/lib/libgomp.so.1", "lib/libgomp.so.1"),
    ("torch-", "torch/lib/libtorch.so", "lib/libtorch.so"),
    ("nvidia_cuda_runtime-", "*/libcudart.so.13", "lib/libcudart.so.13"),
    ("nvidia_cuda_cupti-", "*/libcupti.so.13", "lib/libcupti.so.13"),
];

/// Files whose presence (with the marker) means the folder is complete.
const REQUIRED: &[&str] = &[
    "build-version",
    "include/torch/csrc/api/include/torch/torch.h",
    "lib/libtorch_cpu.so",
    "lib/libc10.so",
    "lib/libgomp.so.1",
    "lib/libtorch.so",
    "lib/libcudart.so.13",
    "lib/libcupti.so.13",
];

const MARKER: &str = ".relprop-complete";

fn recipe() -> String {
    let mut s = format!("libtorch {TORCH_VERSION} cpu-only from PyPI wheels\n");
    for (req, sha) in WHEELS {
        s.push_str(&format!("{req} sha256:{sha}\n"));
    }
    s
}

fn is_complete(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(MARKER)).is_ok_and(|m| m == recipe())
        && REQUIRED.iter().all(|f| dir.join(f).is_file())
        && !dir.join("lib/libtorch_cuda.so").exists()
}

/// Install `.deps/libtorch` (idempotent). Returns its path.
pub fn setup(root: &Path) -> Result<PathBuf, String> {
    let deps = root.join(".deps");
    let dest = deps.join("libtorch");
    if is_complete(&dest) {
        println!("setup tch: {} is complete (libtorch {TORCH_VERSION}, CPU)", dest.display());
        return Ok(dest);
    }
    let cache = deps.join("cache").join("tch-wheels");
    let stage = deps.join("libtorch.partial");
    for d in [&cache, &deps] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    if stage.exists() {
        std::fs::remove_dir_all(&stage).map_err(|e| format!("{}: {e}", stage.display()))?;
    }

    // 1. Download (pip checks the hashes; wheels already in the cache are not fetched again).
    let reqs = cache.join("requirements.txt");
    let text: String = WHEELS.iter().map(|(r, sha)| format!("{r} --hash=sha256:{sha}\n")).collect();
    std::fs::write(&reqs, text).map_err(|e| format!("{}: {e}", reqs.display()))?;
    println!("setup tch: downloading libtorch {TORCH_VERSION} wheels (about 540 MB) into {}", cache.display());
    let mut pip = Command::new(python());
    pip.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes", "--progress-bar", "off"])
        .args(["--python-version", "3.11", "--abi", "cp311", "--implementation", "cp"]);
    for p in PLATFORMS {
        pip.args(["--platform", p]);
    }
    pip.arg("-d").arg(&cache).arg("-r").arg(&reqs);
    util::run(&mut pip)?;

    // 2. Extract only the needed members into the staging folder.
    println!("setup tch: extracting headers and CPU libraries into {}", stage.display());
    let members: String = MEMBERS.iter().map(|(w, m, d)| format!("{w}\t{m}\t{d}\n")).collect();
    util::run(Command::new(python()).args(["-c", EXTRACT_PY]).arg(&cache).arg(&stage).arg(members))?;
    std::fs::write(stage.join("build-version"), format!("{TORCH_VERSION}\n")).map_err(|e| format!("build-version: {e}"))?;
    if let Some(missing) = REQUIRED.iter().find(|f| **f != "build-version" && !stage.join(f).is_file()) {
        return Err(format!("setup tch: {missing} is missing after extraction"));
    }
    std::fs::write(stage.join(MARKER), recipe()).map_err(|e| format!("marker: {e}"))?;

    // 3. Move into place, then drop the wheels.
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    std::fs::rename(&stage, &dest).map_err(|e| format!("rename {} -> {}: {e}", stage.display(), dest.display()))?;
    std::fs::remove_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    println!("setup tch: done, LIBTORCH = {} (set in .cargo/config.toml)", dest.display());
    Ok(dest)
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// argv: wheel folder, staging folder, member table (lines `wheel-prefix\tmember\tdest`).
const EXTRACT_PY: &str = r#"
import os, shutil, sys, zipfile
wheels, stage, table = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [l.split("\t") for l in table.splitlines() if l]
names = sorted(os.listdir(wheels))
for prefix in sorted({r[0] for r in rows}):
    found = [n for n in names if n.startswith(prefix) and n.endswith(".whl")]
    if len(found) != 1:
        sys.exit(f"expected one {prefix}*.whl in {wheels}, found {found}")
    with zipfile.ZipFile(os.path.join(wheels, found[0])) as z:
        for _, member, dest in (r for r in rows if r[0] == prefix):
            if member.startswith("*/"):
                items = [(i, dest) for i in z.infolist() if i.filename.endswith(member[1:])]
                if len(items) > 1:
                    sys.exit(f"{found[0]}: several members match {member}")
            elif member.endswith("/"):
                items = [(i, os.path.join(dest, i.filename[len(member):])) for i in z.infolist()
                         if i.filename.startswith(member) and not i.is_dir()]
            else:
                items = [(z.getinfo(member), dest)]
            if not items:
                sys.exit(f"{found[0]} has no {member}")
            for info, rel in items:
                out = os.path.join(stage, rel)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with z.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                mode = (info.external_attr >> 16) & 0o777
                os.chmod(out, mode if mode else 0o644)
"#;
