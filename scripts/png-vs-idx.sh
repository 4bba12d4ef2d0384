#!/usr/bin/env bash
# Trains Model A on the bundled MNIST twice per seed: from the IDX files (`mnist`) and from
# a PNG export read by ImageFolder (`image-folder`), and prints both test accuracies, their
# gap, and the mean over the seeds.
#
#   scripts/png-vs-idx.sh [SEEDS...]     # default: seeds 0 to 9; the export goes to /tmp/mnist-png
#
# The pixels are the same (a PNG keeps k/255 exactly), but ImageFolder numbers the samples
# class by class, as torchvision does, while the IDX file interleaves the classes: with the same
# seed, the same shuffle picks other images, so the two runs see different batches. The gap at
# one seed is therefore as large as the spread between seeds of either path alone.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1 2 3 4 5 6 7 8 9)
dir=/tmp/mnist-png
cargo build --release --quiet --example mnist --example image-folder
[ -d "$dir/train" ] || target/release/examples/image-folder --export "$dir" > /dev/null

accuracy() { "$@" | sed -n 's/^test accuracy: \(.*\)%$/\1/p'; }
printf '%6s %8s %8s %6s\n' seed idx png gap
for s in "${seeds[@]}"; do
    idx=$(accuracy target/release/examples/mnist --seed "$s" --out /tmp/png-vs-idx-run)
    png=$(accuracy target/release/examples/image-folder --data-dir "$dir" --seed "$s")
    printf '%6s %8s %8s %6s\n' "$s" "$idx" "$png" "$(echo "$idx $png" | awk '{d = $1 - $2; printf "%.2f", d < 0 ? -d : d}')"
done | tee /tmp/png-vs-idx.txt
awk '{ n++; a += $2; b += $3; lo = (n == 1 || $2 < lo) ? $2 : lo; hi = (n == 1 || $2 > hi) ? $2 : hi }
     END { printf "mean over %d seeds: idx %.2f, png %.2f, gap %.2f; idx alone spans %.2f to %.2f\n", n, a / n, b / n, (a - b) / n, lo, hi }' /tmp/png-vs-idx.txt
