/* Distillation's loss and its gradient with respect to the student's logits, in one pass.
 *
 * Why: PyTorch builds the loss from a dozen small operations (two log-softmaxes, a division,
 * cross-entropy, KL divergence, scalings, a gather) and autograd runs about as many backward
 * nodes; on a batch of 64 x 10 logits each costs microseconds of dispatch, not arithmetic:
 * about 120 us per step against about 50 here (bench/bench_kernels.py).
 *
 * For logits s (B, C), labels y (B) and the teacher's tempered log-probabilities
 * lt = log_softmax(t / T) (N, C), looked up at rows index[b]:
 *
 *   loss = alpha/B sum_b CE_b + (1 - alpha) T^2 / B sum_b KL_b
 *   CE_b = logsumexp(s_b) - s_b[y_b]
 *   KL_b = sum_c exp(lt_bc) (lt_bc - log_softmax(s_b / T)_c)
 *
 * and its gradient with respect to s (written to grad, B x C):
 *
 *   alpha/B (softmax(s_b) - onehot(y_b)) + (1 - alpha) T / B (softmax(s_b / T) P_b - exp(lt_b))
 *
 * with P_b = sum_c exp(lt_bc) (1 up to rounding): the exact derivative, as autograd computes it
 * through kl_div and log_softmax. Sums run in double precision, row by row, in a fixed order:
 * the result depends on nothing but the inputs. A zero teacher probability contributes nothing
 * to KL_b.
 *
 * Returns 0, -1 when out of memory, -3 when a label lies outside [0, C), or -4 when an index
 * lies outside the teacher's `rows` (nothing is then computed).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

int funcsim_soft_target_loss(const float *logits, const int64_t *labels, const float *teacher,
                             const int64_t *index, float *grad, double *loss, long batch,
                             long classes, long rows, double alpha, double temperature)
{
    for (long b = 0; b < batch; b++) {
        if (labels[b] < 0 || labels[b] >= classes) return -3;
        if (index[b] < 0 || index[b] >= rows) return -4;
    }
    /* one row's exp(s - max), exp((s - max) / T) and teacher probabilities */
    double *scratch = malloc(sizeof(double) * 3 * (size_t)classes);
    if (!scratch) return -1;
    double *hard = scratch, *soft = scratch + classes, *p = scratch + 2 * classes;
    const double hard_scale = alpha / (double)batch, soft_scale = (1.0 - alpha) / (double)batch;
    double hard_sum = 0.0, soft_sum = 0.0;
    for (long b = 0; b < batch; b++) {
        const float *s = logits + b * classes, *lt = teacher + index[b] * classes;
        float *g = grad + b * classes;
        double peak = -INFINITY;
        for (long c = 0; c < classes; c++) peak = s[c] > peak ? s[c] : peak;
        double total = 0.0, tempered = 0.0, mass = 0.0;
        for (long c = 0; c < classes; c++) {
            hard[c] = exp(s[c] - peak);
            soft[c] = exp((s[c] - peak) / temperature); /* the maximum of s / T is peak / T */
            p[c] = exp((double)lt[c]);
            total += hard[c];
            tempered += soft[c];
            mass += p[c];
        }
        hard_sum += peak + log(total) - s[labels[b]];
        const double lse_t = peak / temperature + log(tempered);
        double kl = 0.0;
        for (long c = 0; c < classes; c++)
            if (p[c] > 0.0) kl += p[c] * ((double)lt[c] - (s[c] / temperature - lse_t));
        soft_sum += kl;
        for (long c = 0; c < classes; c++)
            g[c] = (float)(hard_scale * (hard[c] / total - (c == labels[b])) +
                           soft_scale * temperature * (soft[c] / tempered * mass - p[c]));
    }
    free(scratch);
    *loss = hard_scale * hard_sum + soft_scale * temperature * temperature * soft_sum;
    return 0;
}
