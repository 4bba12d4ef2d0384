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
