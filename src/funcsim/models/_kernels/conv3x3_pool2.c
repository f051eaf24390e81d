/* LeNet's first stage, fused: 3x3 convolution (stride 1, no padding) -> 2x2 max-pool -> ReLU.
 *
 * Why: eagerly, the convolution writes a (B, Co, H-2, W-2) map (5.5 MB per batch of 64 for
 * Fashion-MNIST), max-pool reads it back and writes int64 indices, and the backward pass fills
 * a map of zeros, scatters into it and reads it again for the weight gradient: memory traffic
 * for little arithmetic, a fifth of a training step. Here a pooled cell's four convolution
 * outputs stay in vector registers; only the pooled map (a quarter of the size) and a one-byte
 * code per value are written, and the weight gradient visits only the position each pooled
 * value came from.
 *
 * Layouts (all contiguous, float32 unless noted):
 *   x      (B, H, W, Ci)           channels-last input, Ci <= CI_MAX
 *   w      (3, 3, Ci, Co)          weights, [ky][kx][ci][co]; Co a multiple of 8
 *   bias   (Co) or NULL
 *   out    (B, Hp, Wp, Co)         relu(max over the 2x2 window of conv); Hp = (H-2)/2,
 *                                  Wp = (W-2)/2 (the pool's floor mode)
 *   code   (B, Hp, Wp, Co) int32   window position 0..3 of the maximum (2*dy + dx; the first
 *                                  maximum in row-major order, or a NaN, as PyTorch's
 *                                  max-pool picks it), or 4 where the ReLU passes no gradient
 *                                  (the maximum is <= 0; a NaN maximum passes it, as
 *                                  torch.relu's backward does); NULL when no gradient is wanted
 *   grad   (B, Hp, Wp, Co)         gradient of the loss with respect to out
 *   dw     (3, 3, Ci, Co), db (Co) gradients with respect to w and bias (overwritten)
 *
 * The work is split over channels in groups of 8 (one 256-bit vector, written with GCC/Clang
 * vector extensions, so it also compiles for CPUs without AVX; 16 in one 512-bit vector where
 * the build targets AVX-512, see WIDE below) and over the batch. The
 * backward pass sums the gradient of each fixed chunk of CHUNK images separately and adds the
 * chunks in order, so its result is the same bit for bit on any number of threads.
 *
 * The later sections hold the later stages (16 or more input channels): a Winograd forward
 * pass that pools as it goes, and a backward pass that visits only the non-zero gradients.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 16
#define CI_MAX 3
#define MAX_THREADS 64

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8f load8(const float *p) { v8f v; memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, v8f v) { memcpy(p, &v, sizeof v); }
static inline v8f select8(v8i mask, v8f a, v8f b)
{
    return (v8f)(((v8i)a & mask) | ((v8i)b & ~mask));
}

/* Where the compiler targets AVX-512 (funcsim._native passes -mavx512f where PyTorch found the
 * CPU has it), the first stage's channel groups, the Winograd products and the sparse backward
 * pass's rows also run on 512-bit vectors: half the instructions. The code for a group is
 * written once, as a macro over the vector type, and instantiated for 8 lanes and, where WIDE,
 * for 16. The outputs and the weight and bias gradients are summed in the same order either
 * way (the same bits); the input gradient's sums take their terms in another order where a
 * whole kernel row is one 96-float pass instead of two (float32 rounding apart). Either build
 * alone is deterministic. */
#if defined(__AVX512F__)
#define WIDE 1
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
static inline v16f load16(const float *p) { v16f v; memcpy(&v, p, sizeof v); return v; }
static inline void store16(float *p, v16f v) { memcpy(p, &v, sizeof v); }
static inline v16f select16(v16i mask, v16f a, v16f b)
{
    return (v16f)(((v16i)a & mask) | ((v16i)b & ~mask));
}
#else
#define WIDE 0
#endif

/* One 2x2 window of a group of channels (its four values in row-major order): the maximum
 * (the first in row-major order, or the last NaN, as PyTorch's max-pool picks it), rectified (a
 * NaN passes, as torch.relu lets it), into out; into code, when not NULL, the maximum's
 * position 0..3, or 4 where the ReLU passes no gradient (maximum <= 0). */
#define DEFINE_POOL_RELU_WINDOW(NAME, VF, VI, STORE, SELECT)                                    \
    static inline __attribute__((always_inline)) void NAME(const VF window[4], float *out,     \
                                                           int32_t *code)                      \
    {                                                                                          \
        const VF zero = {0};                                                                   \
        VF best = window[0];                                                                   \
        VI arg = {0};                                                                          \
        for (int q = 1; q < 4; q++) {                                                          \
            const VI take = (window[q] > best) | (window[q] != window[q]);                     \
            best = SELECT(take, window[q], best);                                              \
            arg = (arg & ~take) | (take & q);                                                  \
        }                                                                                      \
        STORE(out, SELECT((best > 0) | (best != best), best, zero));                           \
        if (code) {                                                                            \
            const VI inactive = best <= 0;                                                     \
            const VI c = (arg & ~inactive) | (inactive & 4);                                   \
            memcpy(code, &c, sizeof c);                                                        \
        }                                                                                      \
    }
DEFINE_POOL_RELU_WINDOW(pool_relu_window, v8f, v8i, store8, select8)
#if WIDE
DEFINE_POOL_RELU_WINDOW(pool_relu_window_wide, v16f, v16i, store16, select16)
#endif

/* The first member of every task: this thread's share of the work (thread of threads). */
typedef struct {
    int threads, thread;
} share_t;

typedef struct {
    share_t share;
    const float *x, *w, *bias, *grad;
    float *out, *dw, *db; /* backward: dw, db hold one partial sum per chunk */
    int32_t *code;        /* forward: written (or NULL) */
    const int32_t *codes; /* backward: read */
    long batch, width, ci, co, hp, wp, in_size, out_size;
} task_t;

/* One image's channels o .. o + lanes; `ci` is a compile-time constant at each call site, so
 * the taps unroll. */
#define DEFINE_FORWARD_GROUP(NAME, VF, LOAD, POOL)                                             \
    static inline __attribute__((always_inline)) void NAME(                                    \
        const task_t *t, const float *restrict x, float *restrict out, int32_t *restrict code, \
        long ci, long o)                                                                       \
    {                                                                                          \
        const long width = t->width, co = t->co;                                               \
        VF wv[9 * CI_MAX];                                                                     \
        for (long k = 0; k < 9 * ci; k++) wv[k] = LOAD(t->w + k * co + o);                     \
        const VF bias = t->bias ? LOAD(t->bias + o) : (VF){0};                                 \
        for (long i = 0; i < t->hp; i++) {                                                     \
            for (long j = 0; j < t->wp; j++) {                                                 \
                const float *patch = x + (2 * i * width + 2 * j) * ci;                         \
                /* The window's four outputs side by side: four independent FMA chains. */     \
                VF acc[4] = {bias, bias, bias, bias};                                          \
                for (int ky = 0; ky < 3; ky++)                                                 \
                    for (int kx = 0; kx < 3; kx++)                                             \
                        for (long c = 0; c < ci; c++) {                                        \
                            const VF wk = wv[(ky * 3 + kx) * ci + c];                          \
                            const float *tap = patch + (ky * width + kx) * ci + c;             \
                            for (int q = 0; q < 4; q++)                                        \
                                acc[q] += wk * tap[((q >> 1) * width + (q & 1)) * ci];         \
                        }                                                                      \
                const long at = (i * t->wp + j) * co + o;                                      \
                POOL(acc, out + at, code ? code + at : NULL);                                  \
            }                                                                                  \
        }                                                                                      \
    }
DEFINE_FORWARD_GROUP(forward_group, v8f, load8, pool_relu_window)
#if WIDE
DEFINE_FORWARD_GROUP(forward_group_wide, v16f, load16, pool_relu_window_wide)
#endif

/* One image, group by group. */
static inline __attribute__((always_inline)) void forward_image(
    const task_t *t, const float *restrict x, float *restrict out, int32_t *restrict code, long ci)
{
    for (long o = 0; o < t->co;) {
#if WIDE
        if (o + 16 <= t->co) {
            forward_group_wide(t, x, out, code, ci, o);
            o += 16;
            continue;
        }
#endif
        forward_group(t, x, out, code, ci, o);
        o += 8;
    }
}

static void *forward_worker(void *arg)
{
    const task_t *t = (const task_t *)arg;
    for (long b = t->share.thread; b < t->batch; b += t->share.threads) {
        const float *x = t->x + b * t->in_size;
        float *out = t->out + b * t->out_size;
        int32_t *code = t->code ? t->code + b * t->out_size : NULL;
        if (t->ci == 1)
            forward_image(t, x, out, code, 1);
        else if (t->ci == 2)
            forward_image(t, x, out, code, 2);
        else
            forward_image(t, x, out, code, 3);
    }
    return NULL;
}

/* Adds one image's gradient for channels o .. o + lanes to the chunk's partial sums dw, db. */
#define DEFINE_BACKWARD_GROUP(NAME, VF, VI, LOAD, STORE, SELECT)                               \
    static inline __attribute__((always_inline)) void NAME(                                    \
        const task_t *t, const float *restrict x, const float *restrict grad,                  \
        const int32_t *restrict code, float *restrict dw, float *restrict db, long ci, long o) \
    {                                                                                          \
        const long width = t->width, co = t->co;                                               \
        const VF zero = {0};                                                                   \
        VF dwv[9 * CI_MAX];                                                                    \
        for (long k = 0; k < 9 * ci; k++) dwv[k] = LOAD(dw + k * co + o);                      \
        VF dbv = LOAD(db + o);                                                                 \
        for (long i = 0; i < t->hp; i++) {                                                     \
            for (long j = 0; j < t->wp; j++) {                                                 \
                const long at = (i * t->wp + j) * co + o;                                      \
                const VF g = LOAD(grad + at);                                                  \
                VI c;                                                                          \
                memcpy(&c, code + at, sizeof c);                                               \
                dbv += SELECT(c < 4, g, zero);                                                 \
                const float *patch = x + (2 * i * width + 2 * j) * ci;                         \
                for (int q = 0; q < 4; q++) {                                                  \
                    const VF gq = SELECT(c == q, g, zero);                                     \
                    const float *p = patch + ((q >> 1) * width + (q & 1)) * ci;                \
                    for (int ky = 0; ky < 3; ky++)                                             \
                        for (int kx = 0; kx < 3; kx++)                                         \
                            for (long c2 = 0; c2 < ci; c2++)                                   \
                                dwv[(ky * 3 + kx) * ci + c2] +=                                \
                                    gq * p[(ky * width + kx) * ci + c2];                       \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        for (long k = 0; k < 9 * ci; k++) STORE(dw + k * co + o, dwv[k]);                      \
        STORE(db + o, dbv);                                                                    \
    }
DEFINE_BACKWARD_GROUP(backward_group, v8f, v8i, load8, store8, select8)
#if WIDE
DEFINE_BACKWARD_GROUP(backward_group_wide, v16f, v16i, load16, store16, select16)
#endif

/* Adds one image's gradient to the chunk's partial sums dw, db, group by group. */
static inline __attribute__((always_inline)) void backward_image(
    const task_t *t, const float *restrict x, const float *restrict grad,
    const int32_t *restrict code, float *restrict dw, float *restrict db, long ci)
{
    for (long o = 0; o < t->co;) {
#if WIDE
        if (o + 16 <= t->co) {
            backward_group_wide(t, x, grad, code, dw, db, ci, o);
            o += 16;
            continue;
        }
#endif
        backward_group(t, x, grad, code, dw, db, ci, o);
        o += 8;
    }
}

static void *backward_worker(void *arg)
{
    const task_t *t = (const task_t *)arg;
    const long wsize = 9 * t->ci * t->co, chunks = (t->batch + CHUNK - 1) / CHUNK;
    for (long k = t->share.thread; k < chunks; k += t->share.threads) {
        float *dw = t->dw + k * wsize, *db = t->db + k * t->co;
        memset(dw, 0, sizeof(float) * wsize);
        memset(db, 0, sizeof(float) * t->co);
        const long end = (k + 1) * CHUNK < t->batch ? (k + 1) * CHUNK : t->batch;
        for (long b = k * CHUNK; b < end; b++) {
            const float *x = t->x + b * t->in_size, *grad = t->grad + b * t->out_size;
            const int32_t *code = t->codes + b * t->out_size;
            if (t->ci == 1)
                backward_image(t, x, grad, code, dw, db, 1);
            else if (t->ci == 2)
                backward_image(t, x, grad, code, dw, db, 2);
            else
                backward_image(t, x, grad, code, dw, db, 3);
        }
    }
    return NULL;
}

static int clamp_threads(int threads)
{
    return threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
}

/* Runs fn on `threads` threads, the calling one included, each on its own copy of the task
 * `base` (`size` bytes, a share_t first) with its share filled in. If a thread cannot be
 * started, the ones that did are joined and the calling thread does all the work: same
 * result, slower. */
static void run_threads(void *(*fn)(void *), const void *base, size_t size, int threads)
{
    pthread_t ids[MAX_THREADS];
    threads = clamp_threads(threads);
    max_align_t storage[(threads * size + sizeof(max_align_t) - 1) / sizeof(max_align_t)];
    unsigned char *tasks = (unsigned char *)storage;
    for (int n = 0; n < threads; n++) {
        const share_t share = {.threads = threads, .thread = n};
        memcpy(tasks + n * size, base, size);
        memcpy(tasks + n * size, &share, sizeof share);
    }
    int started = 1;
    while (started < threads &&
           pthread_create(&ids[started], NULL, fn, tasks + started * size) == 0)
        started++;
    if (started < threads) {
        for (int n = 1; n < started; n++) pthread_join(ids[n], NULL);
        const share_t alone = {.threads = 1, .thread = 0};
        memcpy(tasks, &alone, sizeof alone);
        fn(tasks);
        return;
    }
    fn(tasks);
    for (int n = 1; n < threads; n++) pthread_join(ids[n], NULL);
}

/* dw, db = the chunks' partial sums (parts: chunks x wsize weight sums, then chunks x co bias
 * sums), added in chunk order: the same bits however the chunks were spread over threads. */
static void add_chunks(const float *parts, long chunks, long wsize, long co, float *dw, float *db)
{
    memset(dw, 0, sizeof(float) * wsize);
    memset(db, 0, sizeof(float) * co);
    for (long k = 0; k < chunks; k++) {
        for (long i = 0; i < wsize; i++) dw[i] += parts[k * wsize + i];
        for (long o = 0; o < co; o++) db[o] += parts[chunks * wsize + k * co + o];
    }
}

static int bad_shape(long h, long width, long ci, long co)
{
    return h < 4 || width < 4 || ci < 1 || ci > CI_MAX || co < 8 || co % 8 != 0;
}

/* Returns 0, or -2 for shapes this kernel does not handle. */
int funcsim_conv3x3_pool2_forward(const float *x, const float *w, const float *bias, float *out,
                                  int32_t *code, long batch, long h, long width, long ci, long co,
                                  int threads)
{
    if (bad_shape(h, width, ci, co)) return -2;
    const long hp = (h - 2) / 2, wp = (width - 2) / 2;
    const task_t t = {.x = x, .w = w, .bias = bias, .out = out, .code = code, .batch = batch,
                      .width = width, .ci = ci, .co = co, .hp = hp, .wp = wp,
                      .in_size = h * width * ci, .out_size = hp * wp * co};
    run_threads(forward_worker, &t, sizeof t, threads);
    return 0;
}

/* Returns 0, -1 when out of memory, or -2 for shapes this kernel does not handle. */
int funcsim_conv3x3_pool2_backward(const float *x, const float *grad, const int32_t *code,
                                   float *dw, float *db, long batch, long h, long width, long ci,
                                   long co, int threads)
{
    if (bad_shape(h, width, ci, co)) return -2;
    const long hp = (h - 2) / 2, wp = (width - 2) / 2;
    const long wsize = 9 * ci * co, chunks = (batch + CHUNK - 1) / CHUNK;
    float *parts = malloc(sizeof(float) * (size_t)(chunks * (wsize + co)));
    if (!parts) return -1;
    const task_t t = {.x = x, .grad = grad, .codes = code, .dw = parts,
                      .db = parts + chunks * wsize, .batch = batch, .width = width, .ci = ci,
                      .co = co, .hp = hp, .wp = wp, .in_size = h * width * ci,
                      .out_size = hp * wp * co};
    run_threads(backward_worker, &t, sizeof t, threads);
    add_chunks(parts, chunks, wsize, co, dw, db);
    free(parts);
    return 0;
}

/* ---- Later stages, forward pass: Winograd F(2x2, 3x3), pooled as it is transformed back ----
 *
 * Why: the floor-mode 2x2 pool reads the convolution's output in aligned 2x2 windows, and a
 * Winograd F(2x2, 3x3) tile computes exactly such a 2x2 block of outputs from a 4x4 input
 * patch, with 16 multiply-adds per (input, output) channel pair instead of 36. LeNet's second
 * stage needs 5 x 5 tiles of its 11 x 11 output (the 11th row and column are never pooled):
 * 1.6 MFLOP per image in the matrix products against 4.5 for the direct convolution. The
 * transformed tiles of a block of WG_ROWS tiles, their products and the pooled result stay in
 * the L1 cache; only the pooled map and its codes are written.
 *
 * For each tile, with d the 4x4 input patch of one channel and g one 3x3 filter (Lavin and
 * Gray, 2016):  y (2x2) = A^T [ (G g G^T) . (B^T d B) ] A, summed over input channels, where
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 * The sum over input channels runs in the transformed domain: for each of the 16 positions p,
 * M[p] (tiles x Co) = V[p] (tiles x Ci) U[p] (Ci x Co), with U = G g G^T computed once per call.
 * The result equals the direct convolution up to float32 rounding (a different summation
 * order); it does not depend on the number of threads (each tile is computed alone). Where the
 * input holds NaN or infinity, a tile's four outputs are all NaN or infinite where the direct
 * convolution makes at least one of them so: the pooled values agree, the recorded position
 * may differ.
 *
 * Layouts (contiguous, float32 unless noted):
 *   x     (B, H, W, Ci)        channels-last input, Ci a multiple of 8
 *   w     (Co, 3, 3, Ci)       weights [co][ky][kx][ci] (PyTorch's channels-last layout)
 *   bias  (Co) or NULL
 *   out   (B, Hp, Wp, Co)      relu(max over each 2x2 window); Hp = (H-2)/2, Wp = (W-2)/2
 *   code  (B, Hp, Wp, Co)      int32, as in the first stage, or NULL
 */

#define WG_ROWS 6 /* tiles per block: 6 x 16 accumulators + 2 weight vectors + 1 broadcast */

typedef struct {
    share_t share;
    const float *x, *u, *bias;
    float *out, *scratch; /* scratch: per thread, 16 x WG_ROWS x (Ci + Co) */
    int32_t *code;
    long batch, width, ci, co, hp, wp, in_size;
} winograd_task_t;

/* U[p][ci][co] = (G g G^T)[p] for every filter g = w[co][.][.][ci]. */
static void winograd_weights(const float *w, float *u, long ci, long co)
{
    for (long o = 0; o < co; o++)
        for (long c = 0; c < ci; c++) {
            float g[3][3], gg[4][3];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) g[ky][kx] = w[((o * 3 + ky) * 3 + kx) * ci + c];
            for (int kx = 0; kx < 3; kx++) { /* G g: rows */
                gg[0][kx] = g[0][kx];
                gg[1][kx] = 0.5f * (g[0][kx] + g[1][kx] + g[2][kx]);
                gg[2][kx] = 0.5f * (g[0][kx] - g[1][kx] + g[2][kx]);
                gg[3][kx] = g[2][kx];
            }
            for (int a = 0; a < 4; a++) { /* (G g) G^T: columns */
                float *row = u + (a * 4 * ci + c) * co + o; /* p = 4a + b, stride ci * co */
                row[0] = gg[a][0];
                row[ci * co] = 0.5f * (gg[a][0] + gg[a][1] + gg[a][2]);
                row[2 * ci * co] = 0.5f * (gg[a][0] - gg[a][1] + gg[a][2]);
                row[3 * ci * co] = gg[a][2];
            }
        }
}

/* v[p][r][0..ci) = (B^T d B)[p] of the 4x4 patch at `patch` (row stride `row` floats). */
static inline void winograd_input_tile(const float *restrict patch, long row, long ci,
                                       float *restrict v, long p_stride)
{
    for (long c = 0; c < ci; c += 8) {
        v8f d[4][4], t[4][4];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) d[i][j] = load8(patch + i * row + j * ci + c);
        for (int j = 0; j < 4; j++) { /* B^T d */
            t[0][j] = d[0][j] - d[2][j];
            t[1][j] = d[1][j] + d[2][j];
            t[2][j] = d[2][j] - d[1][j];
            t[3][j] = d[1][j] - d[3][j];
        }
        for (int i = 0; i < 4; i++) { /* (B^T d) B */
            float *o = v + (4 * i) * p_stride + c;
            store8(o, t[i][0] - t[i][2]);
            store8(o + p_stride, t[i][1] + t[i][2]);
            store8(o + 2 * p_stride, t[i][2] - t[i][1]);
            store8(o + 3 * p_stride, t[i][1] - t[i][3]);
        }
    }
}

/* m[r][c0 .. c0 + 8 NV) = sum_k v[r][k] u[k][c0 ..] for the WG_ROWS rows of one position. */
static inline __attribute__((always_inline)) void winograd_product(
    const float *restrict v, const float *restrict u, float *restrict m, long ci, long co,
    long c0, int nv)
{
    v8f acc[WG_ROWS][2];
    for (int r = 0; r < WG_ROWS; r++)
        for (int q = 0; q < nv; q++) acc[r][q] = (v8f){0};
    for (long k = 0; k < ci; k++) {
        v8f uk[2];
        for (int q = 0; q < nv; q++) uk[q] = load8(u + k * co + c0 + 8 * q);
        for (int r = 0; r < WG_ROWS; r++) {
            const float a = v[r * ci + k];
            for (int q = 0; q < nv; q++) acc[r][q] += a * uk[q];
        }
    }
    for (int r = 0; r < WG_ROWS; r++)
        for (int q = 0; q < nv; q++) store8(m + r * co + c0 + 8 * q, acc[r][q]);
}

#if WIDE
/* winograd_product for 32 channels c0 .. c0 + 32 on 512-bit vectors. */
static inline __attribute__((always_inline)) void winograd_product_wide(
    const float *restrict v, const float *restrict u, float *restrict m, long ci, long co,
    long c0)
{
    v16f acc[WG_ROWS][2];
    for (int r = 0; r < WG_ROWS; r++) acc[r][0] = acc[r][1] = (v16f){0};
    for (long k = 0; k < ci; k++) {
        const v16f u0 = load16(u + k * co + c0), u1 = load16(u + k * co + c0 + 16);
        for (int r = 0; r < WG_ROWS; r++) {
            const float a = v[r * ci + k];
            acc[r][0] += a * u0;
            acc[r][1] += a * u1;
        }
    }
    for (int r = 0; r < WG_ROWS; r++) {
        store16(m + r * co + c0, acc[r][0]);
        store16(m + r * co + c0 + 16, acc[r][1]);
    }
}
#endif

/* The tile's 2x2 outputs (A^T m A, plus the bias) for channels c..c+8, pooled and rectified. */
static inline void winograd_output_tile(const float *restrict m, long p_stride, v8f bias,
                                        float *out, int32_t *code)
{
    v8f s[2][4], window[4];
    for (int j = 0; j < 4; j++) { /* A^T m */
        const v8f m0 = load8(m + j * p_stride), m1 = load8(m + (4 + j) * p_stride);
        const v8f m2 = load8(m + (8 + j) * p_stride), m3 = load8(m + (12 + j) * p_stride);
        s[0][j] = m0 + m1 + m2;
        s[1][j] = m1 - m2 - m3;
    }
    for (int i = 0; i < 2; i++) { /* (A^T m) A: window position 2 i + j */
        window[2 * i] = s[i][0] + s[i][1] + s[i][2] + bias;
        window[2 * i + 1] = s[i][1] - s[i][2] - s[i][3] + bias;
    }
    pool_relu_window(window, out, code);
}

static void *winograd_forward_worker(void *arg)
{
    const winograd_task_t *t = (const winograd_task_t *)arg;
    const long ci = t->ci, co = t->co, tiles_per_image = t->hp * t->wp;
    const long row = t->width * ci, out_size = tiles_per_image * co;
    /* This thread's images: a contiguous block, its tiles numbered across images. */
    const long b0 = t->batch * t->share.thread / t->share.threads;
    const long b1 = t->batch * (t->share.thread + 1) / t->share.threads;
    const long tiles = (b1 - b0) * tiles_per_image;
    const long v_stride = WG_ROWS * ci, m_stride = WG_ROWS * co; /* per position p */
    float *v = t->scratch + t->share.thread * 16 * (v_stride + m_stride);
    float *m = v + 16 * v_stride;
    for (long first = 0; first < tiles; first += WG_ROWS) {
        const long n = tiles - first < WG_ROWS ? tiles - first : WG_ROWS;
        for (long r = 0; r < WG_ROWS; r++) {
            if (r >= n) { /* unused rows: zeros, not stale values (denormals would be slow) */
                for (int p = 0; p < 16; p++) memset(v + p * v_stride + r * ci, 0, sizeof(float) * ci);
                continue;
            }
            const long tile = first + r, b = b0 + tile / tiles_per_image;
            const long i = tile % tiles_per_image / t->wp, j = tile % t->wp;
            winograd_input_tile(t->x + b * t->in_size + 2 * i * row + 2 * j * ci, row, ci,
                                v + r * ci, v_stride);
        }
        for (int p = 0; p < 16; p++) {
            const float *vp = v + p * v_stride, *up = t->u + p * ci * co;
            float *mp = m + p * m_stride;
            long c0 = 0;
#if WIDE
            for (; c0 + 32 <= co; c0 += 32) winograd_product_wide(vp, up, mp, ci, co, c0);
#endif
            for (; c0 + 16 <= co; c0 += 16) winograd_product(vp, up, mp, ci, co, c0, 2);
            if (c0 < co) winograd_product(vp, up, mp, ci, co, c0, 1);
        }
        for (long r = 0; r < n; r++) {
            const long tile = first + r, b = b0 + tile / tiles_per_image;
            const long at = b * out_size + tile % tiles_per_image * co;
            for (long c = 0; c < co; c += 8) {
                const v8f bias = t->bias ? load8(t->bias + c) : (v8f){0};
                winograd_output_tile(m + r * co + c, m_stride, bias, t->out + at + c,
                                     t->code ? t->code + at + c : NULL);
            }
        }
    }
    return NULL;
}

/* Returns 0, -1 when out of memory, or -2 for shapes this kernel does not handle. */
int funcsim_winograd_conv3x3_pool2_forward(const float *x, const float *w, const float *bias,
                                           float *out, int32_t *code, long batch, long h,
                                           long width, long ci, long co, int threads)
{
    if (h < 4 || width < 4 || ci < 8 || ci % 8 != 0 || co < 8 || co % 8 != 0) return -2;
    threads = clamp_threads(threads);
    float *u = malloc(sizeof(float) * (size_t)(16 * ci * co + threads * 16 * WG_ROWS * (ci + co)));
    if (!u) return -1;
    winograd_weights(w, u, ci, co);
    const winograd_task_t t = {.x = x, .u = u, .bias = bias, .out = out,
                               .scratch = u + 16 * ci * co, .code = code, .batch = batch,
                               .width = width, .ci = ci, .co = co, .hp = (h - 2) / 2,
                               .wp = (width - 2) / 2, .in_size = h * width * ci};
    run_threads(winograd_forward_worker, &t, sizeof t, threads);
    free(u);
    return 0;
}

/* ---- Later stages, backward pass: sparse ----
 *
 * Why: after a 2x2 max-pool and a ReLU, at most one of each window's four convolution outputs
 * gets a gradient (none where the maximum is <= 0), so the convolution's output gradient is at
 * most a quarter non-zero (LeNet's second stage: about 16 % on Fashion-MNIST, and the
 * floor-mode pool never reads the 11th row and column). The weight and input gradients here
 * visit only those non-zeros: per non-zero, one 3 x 3 x Ci patch of x times its gradient into
 * dw, and the same gradient times w[co] into dx's patch. The forward pass (above) recorded
 * which window position each pooled value came from.
 *
 * Layouts (contiguous, float32 unless noted):
 *   code  (B, Hp, Wp, Co) int32    as in the first stage: 0..3, or 4 where no gradient passes
 *                                  (the maximum is <= 0; a NaN maximum passes it, as
 *                                  torch.relu's backward does); Hp = H/2, Wp = W/2 for the
 *                                  convolution's output size H x W
 *   x     (B, H+2, W+2, Ci)        the convolution's input (channels-last), Ci a multiple of 16
 *   w     (Co, 3, 3, Ci)           weights [co][ky][kx][ci] (PyTorch's channels-last layout)
 *   grad  (B, Hp, Wp, Co)          gradient of the loss with respect to out
 *   dx    (B, H+2, W+2, Ci)        gradient with respect to x (overwritten), or NULL
 *   dw    (Co, 3, 3, Ci), db (Co)  gradients with respect to w and the bias (overwritten)
 *
 * dx is computed per image, dw and db per fixed chunk of CHUNK images added in order: the
 * same bits on any number of threads.
 */

#define SEG_VECTORS 6 /* dw and w vectors held in registers per pass over one image's entries */

typedef struct {
    long offset; /* of the window's chosen position in x (and dx), in floats */
    float g;
} entry_t;

typedef struct {
    share_t share;
    const float *x, *w, *grad;
    float *dx, *dw, *db;
    const int32_t *codes;
    entry_t *entries; /* per thread: Co x Hp x Wp */
    long batch, height, width, ci, co, hp, wp;
} sparse_task_t;

/* For one output channel's n non-zero gradients (list) and LANES x SEG_VECTORS consecutive
 * floats of its weights' kernel row (w, dw; x and dx shifted to the same place in a patch):
 * dw += g x, and, when dx is not NULL, dx += g w at each entry's patch. */
#define DEFINE_SPARSE_ROWS(NAME, VF, LANES, LOAD, STORE)                                       \
    static inline __attribute__((always_inline)) void NAME(                                    \
        const entry_t *list, long n, const float *x, float *dx, const float *w, float *dw)     \
    {                                                                                          \
        VF acc[SEG_VECTORS], wv[SEG_VECTORS];                                                  \
        for (int v = 0; v < SEG_VECTORS; v++) acc[v] = LOAD(dw + LANES * v);                   \
        if (dx) {                                                                              \
            for (int v = 0; v < SEG_VECTORS; v++) wv[v] = LOAD(w + LANES * v);                 \
            for (long k = 0; k < n; k++) {                                                     \
                const float g = list[k].g;                                                     \
                const float *xp = x + list[k].offset;                                          \
                float *dp = dx + list[k].offset;                                               \
                for (int v = 0; v < SEG_VECTORS; v++) {                                        \
                    acc[v] += g * LOAD(xp + LANES * v);                                        \
                    STORE(dp + LANES * v, LOAD(dp + LANES * v) + g * wv[v]);                   \
                }                                                                              \
            }                                                                                  \
        } else {                                                                               \
            for (long k = 0; k < n; k++) {                                                     \
                const float g = list[k].g;                                                     \
                const float *xp = x + list[k].offset;                                          \
                for (int v = 0; v < SEG_VECTORS; v++) acc[v] += g * LOAD(xp + LANES * v);      \
            }                                                                                  \
        }                                                                                      \
        for (int v = 0; v < SEG_VECTORS; v++) STORE(dw + LANES * v, acc[v]);                   \
    }
DEFINE_SPARSE_ROWS(sparse_rows, v8f, 8, load8, store8)
#if WIDE
DEFINE_SPARSE_ROWS(sparse_rows_wide, v16f, 16, load16, store16)
#endif

/* One image: lists each channel's non-zero gradients, then adds them to dw, db (the chunk's
 * partial sums) and, when wanted, writes the image's dx. */
static void sparse_backward_image(const sparse_task_t *t, const float *restrict x,
                                  const float *restrict grad, const int32_t *restrict code,
                                  float *dx, float *restrict dw, float *restrict db)
{
    const long ci = t->ci, co = t->co, cells = t->hp * t->wp, in_width = t->width + 2;
    const long row = in_width * ci, seg = 3 * ci; /* one kernel row of a patch: 3 x Ci floats */
    entry_t *entries = t->entries;
    long counts[co];
    for (long o = 0; o < co; o++) counts[o] = 0;
    for (long i = 0; i < t->hp; i++)
        for (long j = 0; j < t->wp; j++) {
            const long cell = i * t->wp + j;
            for (long o = 0; o < co; o++) {
                const int32_t c = code[cell * co + o];
                if (c < 4) {
                    entry_t *e = entries + o * cells + counts[o]++;
                    e->offset = ((2 * i + (c >> 1)) * in_width + 2 * j + (c & 1)) * ci;
                    e->g = grad[cell * co + o];
                }
            }
        }
    if (dx) memset(dx, 0, sizeof(float) * (size_t)((t->height + 2) * row));
    for (long o = 0; o < co; o++) {
        const entry_t *list = entries + o * cells;
        const long n = counts[o];
        float bias_sum = 0;
        for (long k = 0; k < n; k++) bias_sum += list[k].g;
        db[o] += bias_sum;
        for (long ky = 0; ky < 3; ky++)
            for (long s = 0; s < seg;) {
                const long at = (o * 3 + ky) * seg + s, shift = ky * row + s;
#if WIDE
                if (s + 16 * SEG_VECTORS <= seg) {
                    sparse_rows_wide(list, n, x + shift, dx ? dx + shift : NULL, t->w + at, dw + at);
                    s += 16 * SEG_VECTORS;
                    continue;
                }
#endif
                sparse_rows(list, n, x + shift, dx ? dx + shift : NULL, t->w + at, dw + at);
                s += 8 * SEG_VECTORS;
            }
    }
}

static void *sparse_backward_worker(void *arg)
{
    const sparse_task_t *t = (const sparse_task_t *)arg;
    const long wsize = 9 * t->ci * t->co, chunks = (t->batch + CHUNK - 1) / CHUNK;
    const long in_size = (t->height + 2) * (t->width + 2) * t->ci, out_size = t->hp * t->wp * t->co;
    sparse_task_t mine = *t;
    mine.entries = t->entries + (long)t->share.thread * t->co * t->hp * t->wp;
    for (long k = t->share.thread; k < chunks; k += t->share.threads) {
        float *dw = t->dw + k * wsize, *db = t->db + k * t->co;
        memset(dw, 0, sizeof(float) * wsize);
        memset(db, 0, sizeof(float) * t->co);
        const long end = (k + 1) * CHUNK < t->batch ? (k + 1) * CHUNK : t->batch;
        for (long b = k * CHUNK; b < end; b++)
            sparse_backward_image(&mine, t->x + b * in_size, t->grad + b * out_size,
                                  t->codes + b * out_size, t->dx ? t->dx + b * in_size : NULL, dw,
                                  db);
    }
    return NULL;
}

/* The sparse backward pass; h, width are the convolution's output size (x is 2 larger).
 * Returns 0, -1 when out of memory, or -2 for shapes this kernel does not handle. */
int funcsim_conv3x3_pool2_sparse_backward(const float *x, const float *w, const float *grad,
                                          const int32_t *code, float *dx, float *dw, float *db,
                                          long batch, long h, long width, long ci, long co,
                                          int threads)
{
    if (h < 2 || width < 2 || ci < 16 || ci % 16 != 0 || co < 8 || co % 8 != 0) return -2;
    threads = clamp_threads(threads);
    const long hp = h / 2, wp = width / 2, wsize = 9 * ci * co;
    const long chunks = (batch + CHUNK - 1) / CHUNK;
    float *parts = malloc(sizeof(float) * (size_t)(chunks * (wsize + co)));
    entry_t *entries = malloc(sizeof(entry_t) * (size_t)(threads * co * hp * wp));
    if (!parts || !entries) {
        free(parts);
        free(entries);
        return -1;
    }
    const sparse_task_t t = {.x = x, .w = w, .grad = grad, .codes = code, .dx = dx, .dw = parts,
                           .db = parts + chunks * wsize, .entries = entries, .batch = batch,
                           .height = h, .width = width, .ci = ci, .co = co, .hp = hp, .wp = wp};
    run_threads(sparse_backward_worker, &t, sizeof t, threads);
    add_chunks(parts, chunks, wsize, co, dw, db);
    free(parts);
    free(entries);
    return 0;
}
