#!/usr/bin/env bash
# The cost of data-parallel training on one machine: an epoch of the mnist example (Model A, the
# bundled 8,000 digits) with 2 ranks × 1 thread under mpirun (batch 50 each) against 1 process ×
# 2 threads (batch 100): the same global batches, so the same work, and the ratio of the epoch
# times is the communication's overhead. Also prints both runs' train loss, test accuracy and the
# ranks' weights fingerprints (the issue's checks). Needs OpenMPI (mpirun) and a Rust toolchain.
#
#     bash bench/distributed.sh [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs="${1:-1}"
cargo build --release --quiet --features mpi --example mnist
exe=target/release/examples/mnist
out="${TMPDIR:-/tmp}/staticnet-bench-distributed"
rm -rf "$out"
RAYON_NUM_THREADS=2 "$exe" --epochs "$epochs" --batch-size 100 --out "$out/single" > "$out.single.log"
# One thread sums in the order each rank does: the loss to compare exactly.
RAYON_NUM_THREADS=1 "$exe" --epochs "$epochs" --batch-size 100 --out "$out/single1" > "$out.single1.log"
RAYON_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np 2 -x RAYON_NUM_THREADS \
    "$exe" --epochs "$epochs" --batch-size 50 --out "$out/ddp" > "$out.ddp.log"
# history.csv: epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds
last() { tail -n 1 "$1/history.csv"; }
single=$(last "$out/single"); single1=$(last "$out/single1"); ddp=$(last "$out/ddp")
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores"
echo "1 process x 2 threads, batch 100: epoch $(cut -d, -f7 <<<"$single") s, train loss $(cut -d, -f2 <<<"$single"), $(grep 'test accuracy' "$out.single.log")"
echo "1 process x 1 thread, batch 100: epoch $(cut -d, -f7 <<<"$single1") s, train loss $(cut -d, -f2 <<<"$single1"), $(grep 'test accuracy' "$out.single1.log")"
echo "2 ranks x 1 thread, batch 50 each: epoch $(cut -d, -f7 <<<"$ddp") s, train loss $(cut -d, -f2 <<<"$ddp"), $(grep 'test accuracy' "$out.ddp.log")"
grep 'fingerprint' "$out.ddp.log" | sort
awk -v a="$(cut -d, -f2 <<<"$ddp")" -v b="$(cut -d, -f2 <<<"$single")" -v b1="$(cut -d, -f2 <<<"$single1")" -v ta="$(cut -d, -f7 <<<"$ddp")" -v tb="$(cut -d, -f7 <<<"$single")" \
    'BEGIN { d = a - b; if (d < 0) d = -d; d1 = a - b1; if (d1 < 0) d1 = -d1
             printf "train loss relative difference: %.2e against 2 threads, %.2e against 1 thread (goal <= 1e-4)\nepoch time ratio, 2 ranks / 1 process: %.3f (goal <= 1.15)\n", d / b, d1 / b1, ta / tb }'
