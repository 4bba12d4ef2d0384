// Cross-entropy on logits, log-softmax and NLL fused: one thread per sample, in f64 as on the
// CPU, never materialising the probabilities. Each row's loss and hit go to `row_loss` and
// `row_correct`; the host sums them in order, so the mean does not depend on scheduling.

// dlogits (n, c) = (softmax − target)/n, written when not null; row_loss (n), row_correct (n)
// written. target = (1−ε)·one_hot(label) + ε/c. With `log_probs` (NLLLoss) the input is already
// log-probabilities: no log-sum-exp, and dlogits = −target/n.
extern "C" __global__ void cross_entropy_fwd_bwd_f32(float* dlogits, double* row_loss, u32* row_correct, const float* logits, const u32* labels,
                                                     u32 n, u32 c, double eps, int log_probs) {
    GRID_STRIDE(b, n) {
        const float* row = logits + b * c;
        u32 label = labels[b];
        float max = NEG_INF;
        u32 arg = 0;
        for (u32 k = 0; k < c; k++) {
            if (row[k] > max) {
                max = row[k];
                arg = k;
            }
        }
        row_correct[b] = arg == label;
        double lse = 0.0;
        if (!log_probs) {
            double sum = 0.0;
            for (u32 k = 0; k < c; k++) sum += exp((double)(row[k] - max));
            lse = (double)max + log(sum);
        }
        double mean_logp = 0.0;
        for (u32 k = 0; k < c; k++) mean_logp += (double)row[k] - lse;
        mean_logp /= c;
        row_loss[b] = -((1.0 - eps) * ((double)row[label] - lse) + eps * mean_logp);
        if (dlogits) {
            for (u32 k = 0; k < c; k++) {
                double target = (1.0 - eps) * (k == label ? 1.0 : 0.0) + eps / c;
                double p = log_probs ? 0.0 : exp((double)row[k] - lse);
                dlogits[b * c + k] = (float)((p - target) / n);
            }
        }
    }
}

// A captured train step's loss, summed on the device until the host asks (no copy back per
// step): one block adds the mean of `row_loss` (n), the count of `row_correct`, n and one step
// to `totals` (Σ mean loss, correct, samples, steps: `LossTotals` in device/cuda.rs). The rows
// are summed in a fixed order for a given n, so the totals do not depend on scheduling.
struct LossTotals {
    double loss_sum;
    u64 correct, samples, steps;
};

extern "C" __global__ void __launch_bounds__(REDUCE_THREADS) loss_accumulate(LossTotals* totals, const double* row_loss, const u32* row_correct, u32 n) {
    double loss = 0.0, correct = 0.0;
    for (u32 b = threadIdx.x; b < n; b += blockDim.x) {
        loss += row_loss[b];
        correct += row_correct[b];
    }
    loss = block_sum(loss);
    correct = block_sum(correct);
    if (threadIdx.x == 0) {
        totals->loss_sum += loss / n;
        totals->correct += (u64)correct;
        totals->samples += n;
        totals->steps += 1;
    }
}
