#!/usr/bin/env bash
# Checks the CUDA issue's points on a GPU machine that has CUDA and PyTorch but no Rust
# toolchain: the binaries are built here, carried there in devbin/, and run from the
# repository's root.
#
#   scripts/gpu-check.sh build          # here: CUDA test binaries, bench and mnist into devbin/
#   scripts/gpu-check.sh run tests      # there: NVRTC, per-op GPU-vs-CPU, every parity test (and
#                                       #   bf16's against autocast) and the graphed train step against
#                                       #   the eager one, with cuDNN and cuBLAS and without; a missing
#                                       #   GPU or NVRTC failing instead of skipping
#   scripts/gpu-check.sh run mnist      # there: the mnist example with --device cuda, f32 and bf16
#   scripts/gpu-check.sh run bench      # there: bench/compare.py --device cuda (PyTorch eager), f32
#                                       #   and bf16, and our train steps eager (STATICNET_EAGER=1)
#                                       #   beside the graphed
#   scripts/gpu-check.sh run compile    # there: the same against torch.compile (each mode compiles
#                                       #   every network: minutes; --only NAME narrows it)
#   scripts/gpu-check.sh run all        # there: tests, mnist and bench in one go (one device call)
#
# The binaries read the fixtures and the bundled MNIST under the path they were built in, so
# `run` links that path to this checkout when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

build() {
    mkdir -p devbin
    # The test binaries (tests/parity.rs, tests/backends.rs, runtime/tests/nvrtc.rs) by name,
    # from cargo's JSON messages.
    cargo test --release --features cuda --workspace --no-run --message-format=json \
        | python3 -c '
import json, shutil, sys
want = {"parity", "backends", "nvrtc", "graph"}
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in want and "test" in m["target"]["kind"]:
        shutil.copy(m["executable"], "devbin/" + m["target"]["name"])
        want.discard(m["target"]["name"])
if want:
    sys.exit(f"not built: {sorted(want)}")
'
    cargo build --release --features cuda --example bench --example mnist
    cp target/release/examples/bench target/release/examples/mnist devbin/
    # Debug line tables make them 20 MB each; the device tool carries 64 MB in all.
    strip --strip-debug devbin/parity devbin/backends devbin/nvrtc devbin/graph devbin/bench devbin/mnist
    echo "$root" > devbin/BUILT_IN
    echo "built in $root: $(cd devbin && ls | tr '\n' ' ')(carry devbin to the GPU machine)"
}

run() {
    command -v nvidia-smi >/dev/null || { echo "no nvidia-smi here: run this on the GPU machine" >&2; exit 1; }
    [ -e devbin/BUILT_IN ] || { echo "no devbin/BUILT_IN: run '$0 build' first (where cargo is)" >&2; exit 1; }
    nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader
    built_in=$(cat devbin/BUILT_IN)
    if [ ! -e "$built_in" ]; then
        mkdir -p "$(dirname "$built_in")" && ln -s "$root" "$built_in"
    fi
    # NVRTC: the driver's major version where there is a choice.
    nvrtc=$(find / -xdev \( -name 'libnvrtc.so.13*' -o -name 'libnvrtc.so.12*' \) -not -path '/proc/*' 2>/dev/null | grep -v builtins || true)
    lib=$(echo "$nvrtc" | grep 'so.13' | head -1 || true)
    [ -n "$lib" ] || lib=$(echo "$nvrtc" | head -1)
    [ -n "$lib" ] || { echo "no libnvrtc found" >&2; exit 1; }
    export LD_LIBRARY_PATH="$(dirname "$lib"):${LD_LIBRARY_PATH:-}"
    # cuDNN: the system's, or the one PyTorch's wheels bring; without it our kernels run alone.
    cudnn=$(find / -xdev -name 'libcudnn.so.9*' -not -path '/proc/*' 2>/dev/null | head -1 || true)
    if [ -n "$cudnn" ]; then
        export LD_LIBRARY_PATH="$(dirname "$cudnn"):$LD_LIBRARY_PATH"
        echo "cuDNN: $cudnn"
    else
        echo "cuDNN: none found (convolutions run on our kernels)"
    fi
    export STATICNET_REQUIRE_GPU=1 STATICNET_REQUIRE_NVRTC=1
    case "${1:-}" in
        all) for what in tests mnist bench; do echo "##### $what"; "$0" run "$what" || echo "##### $what FAILED"; done ;;
        tests)
            for t in nvrtc graph backends parity; do echo "=== $t"; devbin/$t --test-threads=4; done
            # Each path alone: cuDNN and cuBLAS wherever they can, and ours only.
            for vendor in "cudnn cublas" "ours ours"; do
                set -- $vendor
                for t in backends parity graph; do
                    echo "=== $t, STATICNET_CONV=$1 STATICNET_GEMM=$2"
                    STATICNET_CONV=$1 STATICNET_GEMM=$2 devbin/$t --test-threads=4 -q
                done
            done ;;
        mnist) devbin/mnist --device cuda && devbin/mnist --device cuda --precision bf16 && devbin/mnist ;;
        bench)
            echo "=== eager train steps (what the graphs save), and where their time goes"
            STATICNET_EAGER=1 STATICNET_CUDA_PROFILE=1 devbin/bench --no-layers --device cuda --iters 20
            python3 bench/compare.py --device cuda --bench-bin devbin/bench
            echo "=== bf16 mixed precision, both sides (PyTorch under autocast)"
            python3 bench/compare.py --device cuda --precision bf16 --rounds 1 --bench-bin devbin/bench ;;
        compile) shift; python3 bench/compare.py --device cuda --compile --bench-bin devbin/bench "$@" ;;
        *) echo "run what? tests, mnist, bench, compile or all" >&2; exit 2 ;;
    esac
}

case "${1:-}" in
    build) build ;;
    run) shift; run "$@" ;;
    *) sed -n '2,18p' "$0" >&2; exit 2 ;;
esac
