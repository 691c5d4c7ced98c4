// Causal attention, forward and backward, in bf16 on x86 CPUs with AVX512-BF16 (models/cpu_attention.py builds
// and loads this file; it is used only where a timing on the machine shows it faster than torch's SDPA).
//
// Every matmul runs on one micro-kernel: C (fp32) += A (bf16, row-major, rows of pairs) x B (bf16, "VNNI" pairs:
// element (k, n) at B[(k / 2) * ldb + n][k % 2]), one vdpbf16ps per pair of k and 16 columns. The operands are
// laid out once per head so that every product below is of that form, without transposing a block:
//   forward, per block of 64 query rows:  S = Q K^T,  P = softmax(scale S) (two passes over the row),  O = P V
//   backward, same blocks:  S = Q K^T,  P = exp(scale S - lse),  dP = dO V^T,  dS = scale P (dP - D),
//     dQ = dS K,  dV^T += dO^T P,  dK^T += Q^T dS  (dV^T and dK^T accumulate per thread, summed at the end)
// Work items are (batch, head, query block), longest first, dealt round-robin to the threads.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <vector>

namespace {

using bf16 = uint16_t;
constexpr int64_t BM = 64;  // query rows per work item
constexpr int64_t CH = 2048;  // key columns per chunk of the backward pass (smaller chunks measured slower)

inline float to_float(bf16 x) {
  uint32_t u = uint32_t(x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline bf16 to_bf16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return bf16(u >> 16);
}

inline __m512 exp512(__m512 x) {
  const __m512 log2e = _mm512_set1_ps(1.44269504f), ln2_hi = _mm512_set1_ps(0.693359375f),
               ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
  r = _mm512_fnmadd_ps(n, ln2_lo, r);
  __m512 p = _mm512_set1_ps(1.f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

template <int MR, int NV>
void micro(const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float* C, int64_t ldc, int64_t K2, bool acc) {
  __m512 c[MR][NV];
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < NV; ++n) c[m][n] = acc ? _mm512_loadu_ps(C + m * ldc + 16 * n) : _mm512_setzero_ps();
  for (int64_t p = 0; p < K2; ++p) {
    const bf16* bp = B + p * ldb * 2;
    __m512bh b[NV];
    for (int n = 0; n < NV; ++n) b[n] = (__m512bh)_mm512_loadu_si512(bp + 32 * n);
    for (int m = 0; m < MR; ++m) {
      int32_t pair;
      std::memcpy(&pair, A + m * lda + 2 * p, 4);
      __m512bh a = (__m512bh)_mm512_set1_epi32(pair);
      for (int n = 0; n < NV; ++n) c[m][n] = _mm512_dpbf16_ps(c[m][n], a, b[n]);
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int n = 0; n < NV; ++n) _mm512_storeu_ps(C + m * ldc + 16 * n, c[m][n]);
}

using Micro = void (*)(const bf16*, int64_t, const bf16*, int64_t, float*, int64_t, int64_t, bool);

template <int NV>
Micro pick_m(int mr) {
  switch (mr) {
    case 1: return micro<1, NV>;
    case 2: return micro<2, NV>;
    case 3: return micro<3, NV>;
    case 4: return micro<4, NV>;
    case 5: return micro<5, NV>;
    default: return micro<6, NV>;
  }
}

Micro pick(int mr, int nv) {
  switch (nv) {
    case 1: return pick_m<1>(mr);
    case 2: return pick_m<2>(mr);
    case 3: return pick_m<3>(mr);
    default: return pick_m<4>(mr);
  }
}

// C[M x N] (+)= A[M x K] B[K x N]; N a multiple of 16, K even. B points at column 0 of the VNNI layout.
void gemm(int64_t M, int64_t N, int64_t K, const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float* C,
          int64_t ldc, bool acc) {
  for (int64_t n0 = 0; n0 < N; n0 += 64) {
    int nv = int(std::min<int64_t>(4, (N - n0) / 16));
    for (int64_t m0 = 0; m0 < M; m0 += 6) {
      int mr = int(std::min<int64_t>(6, M - m0));
      pick(mr, nv)(A + m0 * lda, lda, B + n0 * 2, ldb, C + m0 * ldc + n0, ldc, K / 2, acc);
    }
  }
}

// Layouts of one head (T rows of d, row-major bf16) into zero-padded buffers of Tp rows.
// pairs_t: out[p][j] = (x[j][2p], x[j][2p+1]), as uint32 (d/2 x Tp): B of a product contracting over d.
void pack_pairs_t(const bf16* x, int64_t T, int64_t Tp, int64_t d, bf16* out) {
  const uint32_t* src = reinterpret_cast<const uint32_t*>(x);
  uint32_t* dst = reinterpret_cast<uint32_t*>(out);
  for (int64_t p = 0; p < d / 2; ++p) {
    for (int64_t j = 0; j < T; ++j) dst[p * Tp + j] = src[j * (d / 2) + p];
    for (int64_t j = T; j < Tp; ++j) dst[p * Tp + j] = 0;
  }
}

// vnni: out[j/2][c] = (x[j][c], x[j+1][c]) (Tp/2 x d pairs): B of a product contracting over the rows.
void pack_vnni(const bf16* x, int64_t T, int64_t Tp, int64_t d, bf16* out) {
  for (int64_t j = 0; j < Tp; j += 2)
    for (int64_t c = 0; c < d; ++c) {
      out[(j / 2 * d + c) * 2] = j < T ? x[j * d + c] : 0;
      out[(j / 2 * d + c) * 2 + 1] = j + 1 < T ? x[(j + 1) * d + c] : 0;
    }
}

// rows_t: out[c][j] = x[j][c] (d x Tp): A of a product contracting over the rows (pairs of rows side by side).
void pack_rows_t(const bf16* x, int64_t T, int64_t Tp, int64_t d, bf16* out) {
  for (int64_t c = 0; c < d; ++c) {
    for (int64_t j = 0; j < T; ++j) out[c * Tp + j] = x[j * d + c];
    for (int64_t j = T; j < Tp; ++j) out[c * Tp + j] = 0;
  }
}

// Two fp32 rows of 16 -> 16 interleaved bf16 pairs (lo from a, hi from b): one row pair of a VNNI layout.
inline void store_pairs(__m512 a, __m512 b, bf16* dst) {
  __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(a));
  __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(b));
  _mm512_storeu_si512(dst, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
}

// dst[c] = bf16(src[c] * scale) for a row of d (a multiple of 16)
inline void store_row(const float* src, float scale, int64_t d, bf16* dst) {
  const __m512 sc = _mm512_set1_ps(scale);
  for (int64_t c = 0; c < d; c += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c),
                        (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(src + c), sc)));
}

struct Shape {
  int64_t B, H, Hkv, T, d, Tp, nb;
  float scale;
  int64_t window;
  Shape(const at::Tensor& q, const at::Tensor& k, double scale_, int64_t window_)
      : B(q.size(0)), H(q.size(1)), Hkv(k.size(1)), T(q.size(2)), d(q.size(3)), scale(float(scale_)),
        window(window_) {
    Tp = (T + BM - 1) / BM * BM;
    nb = Tp / BM;
  }
  // key columns [lo, hi) a query block reads: hi rounded up to 16, lo down to 16 under a sliding window
  void cols(int64_t i0, int64_t M, int64_t& lo, int64_t& n) const {
    int64_t hi = i0 + M;
    lo = window > 0 ? std::max<int64_t>(0, i0 - window + 1) / 16 * 16 : 0;
    n = (hi - lo + 15) / 16 * 16;
  }
  // the valid columns of query row i, relative to lo: [a, b]
  void valid(int64_t i, int64_t lo, int64_t& a, int64_t& b) const {
    a = window > 0 ? std::max<int64_t>(0, i - window + 1) - lo : 0;
    b = i - lo;
  }
};

// n jobs dealt round-robin to the threads (thread t runs jobs t, t + nthreads, ...): jobs listed longest first
// spread evenly. `init(t)` runs once on each thread before its jobs.
template <typename F, typename I>
void deal(int64_t n, F job, I init) {
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n));
  at::parallel_for(0, nt, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      init(t);
      for (int64_t x = t; x < n; x += nt) job(t, x);
    }
  });
}

template <typename F>
void deal(int64_t n, F job) {
  deal(n, job, [](int64_t) {});
}

// the (batch x head, query block) work items, longest (last block) first
std::vector<int64_t> items(int64_t nb, int64_t heads) {
  std::vector<int64_t> out;
  for (int64_t ib = nb - 1; ib >= 0; --ib)
    for (int64_t bh = 0; bh < heads; ++bh) out.push_back(bh * nb + ib);
  return out;
}

// scratch kept between calls (no page faults or zeroing per call); one call at a time
std::mutex scratch_lock;
std::vector<float> scratch_f;
std::vector<bf16> scratch_h;

template <typename T>
T* grow(std::vector<T>& v, int64_t n) {  // n elements, 64-byte aligned
  if (int64_t(v.size()) < n + 64) v.resize(n + 64);
  return reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(v.data()) + 63) & ~uintptr_t(63));
}

inline __mmask16 valid_mask(int64_t j0, int64_t a, int64_t b) {
  __m512i j = _mm512_add_epi32(_mm512_set1_epi32(int32_t(j0)),
                               _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  return _mm512_cmpge_epi32_mask(j, _mm512_set1_epi32(int32_t(a))) &
         _mm512_cmple_epi32_mask(j, _mm512_set1_epi32(int32_t(b)));
}

void check(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "q, k, v: (batch, heads, tokens, head_dim)");
  for (const auto* t : {&q, &k, &v})
    TORCH_CHECK(t->scalar_type() == at::kBFloat16 && t->is_contiguous() && t->device().is_cpu(),
                "q, k, v: contiguous bf16 CPU tensors");
  TORCH_CHECK(k.sizes() == v.sizes() && q.size(0) == k.size(0) && q.size(2) == k.size(2) && q.size(3) == k.size(3),
              "k and v match q in batch, tokens and head_dim");
  TORCH_CHECK(q.size(1) % k.size(1) == 0, "query heads a multiple of key heads");
  TORCH_CHECK(q.size(3) % 16 == 0, "head_dim a multiple of 16");
}

std::vector<at::Tensor> fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                            int64_t window) {
  check(q, k, v);
  Shape s(q, k, scale, window);
  const int64_t d = s.d, Tp = s.Tp, g = s.H / s.Hkv;
  at::Tensor out = at::empty(q.sizes(), q.options());
  at::Tensor lse = at::empty({s.B, s.H, s.T}, q.options().dtype(at::kFloat));
  std::lock_guard<std::mutex> guard(scratch_lock);
  const int64_t nt = at::get_num_threads(), nkv = s.B * s.Hkv;
  bf16* hbuf = grow(scratch_h, 2 * nkv * Tp * d + nt * BM * Tp);
  bf16 *kt = hbuf, *vv = hbuf + nkv * Tp * d, *P = hbuf + 2 * nkv * Tp * d;
  float* fbuf = grow(scratch_f, nt * (BM * Tp + BM * d + BM));
  float *S = fbuf, *Ob = fbuf + nt * BM * Tp, *inv = Ob + nt * BM * d;
  const bf16* Q = reinterpret_cast<const bf16*>(q.data_ptr());
  const bf16* K = reinterpret_cast<const bf16*>(k.data_ptr());
  const bf16* V = reinterpret_cast<const bf16*>(v.data_ptr());
  bf16* O = reinterpret_cast<bf16*>(out.data_ptr());
  float* L = lse.data_ptr<float>();
  deal(2 * nkv, [&](int64_t, int64_t x) {
    const int64_t h = x / 2;
    if (x % 2 == 0) pack_pairs_t(K + h * s.T * d, s.T, Tp, d, kt + h * d * Tp);
    else pack_vnni(V + h * s.T * d, s.T, Tp, d, vv + h * Tp * d);
  });
  const std::vector<int64_t> work = items(s.nb, s.B * s.H);
  deal(int64_t(work.size()), [&](int64_t t, int64_t x) {
    const int64_t bh = work[x] / s.nb, ib = work[x] % s.nb;
    const int64_t kvh = (bh / s.H) * s.Hkv + (bh % s.H) / g;
    const int64_t i0 = ib * BM, M = std::min(BM, s.T - i0);
    int64_t lo, n;
    s.cols(i0, M, lo, n);
    float* St = S + t * BM * Tp;
    bf16* Pt = P + t * BM * Tp;
    float* it = inv + t * BM;
    gemm(M, n, d, Q + (bh * s.T + i0) * d, d, kt + kvh * d * Tp + lo * 2, Tp, St, n, false);
    for (int64_t r = 0; r < M; ++r) {
      int64_t a, bcol;
      s.valid(i0 + r, lo, a, bcol);
      float* row = St + r * n;
      __m512 mx = _mm512_set1_ps(-INFINITY);
      for (int64_t j = 0; j < n; j += 16)
        mx = _mm512_mask_max_ps(mx, valid_mask(j, a, bcol), mx, _mm512_loadu_ps(row + j));
      const float m = _mm512_reduce_max_ps(mx) * s.scale;
      const __m512 sc = _mm512_set1_ps(s.scale), mm = _mm512_set1_ps(m);
      __m512 sum = _mm512_setzero_ps();
      for (int64_t j = 0; j < n; j += 16) {
        __m512 p = _mm512_maskz_mov_ps(valid_mask(j, a, bcol),
                                       exp512(_mm512_fmsub_ps(_mm512_loadu_ps(row + j), sc, mm)));
        sum = _mm512_add_ps(sum, p);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(Pt + r * n + j), (__m256i)_mm512_cvtneps_pbh(p));
      }
      const float l = _mm512_reduce_add_ps(sum);
      it[r] = 1.f / l;
      L[bh * s.T + i0 + r] = m + std::log(l);
    }
    float* Ot = Ob + t * BM * d;
    gemm(M, d, n, Pt, n, vv + kvh * Tp * d + lo * d, d, Ot, d, false);
    for (int64_t r = 0; r < M; ++r) store_row(Ot + r * d, it[r], d, O + (bh * s.T + i0 + r) * d);
  });
  return {out, lse};
}

std::vector<at::Tensor> bwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
                            const at::Tensor& lse, const at::Tensor& dout, double scale, int64_t window) {
  check(q, k, v);
  TORCH_CHECK(out.sizes() == q.sizes() && dout.sizes() == q.sizes() && out.is_contiguous() && dout.is_contiguous() &&
                  out.scalar_type() == at::kBFloat16 && dout.scalar_type() == at::kBFloat16,
              "out and dout: contiguous bf16 like q");
  TORCH_CHECK(lse.is_contiguous() && lse.scalar_type() == at::kFloat, "lse: contiguous fp32");
  Shape s(q, k, scale, window);
  const int64_t d = s.d, Tp = s.Tp, T = s.T, g = s.H / s.Hkv, nkv = s.B * s.Hkv, nq = s.B * s.H;
  std::lock_guard<std::mutex> guard(scratch_lock);
  const int64_t nt = at::get_num_threads();
  const bf16* Q = reinterpret_cast<const bf16*>(q.data_ptr());
  const bf16* K = reinterpret_cast<const bf16*>(k.data_ptr());
  const bf16* V = reinterpret_cast<const bf16*>(v.data_ptr());
  const bf16* Ou = reinterpret_cast<const bf16*>(out.data_ptr());
  const bf16* dO = reinterpret_cast<const bf16*>(dout.data_ptr());
  const float* L = lse.data_ptr<float>();
  const int64_t hd = d * Tp;  // one head's layout
  bf16* hbuf = grow(scratch_h, (3 * nkv + 2 * nq) * hd + 3 * nt * BM * CH);
  bf16 *kt = hbuf, *vt = kt + nkv * hd, *kv = vt + nkv * hd, *qt = kv + nkv * hd, *dot = qt + nq * hd;
  bf16 *Pv = dot + nq * hd, *dSv = Pv + nt * BM * CH, *dS = dSv + nt * BM * CH;
  float* fbuf = grow(scratch_f, nq * Tp + 2 * nt * nkv * hd + 2 * nt * BM * CH + nt * BM * d);
  float *D = fbuf, *dvt = D + nq * Tp, *dkt = dvt + nt * nkv * hd, *S = dkt + nt * nkv * hd;
  float *dP = S + nt * BM * CH, *dQ = dP + nt * BM * CH;
  // layouts: three per key head, three per query head (D: the row sums of dO * O)
  deal(3 * (nkv + nq), [&](int64_t, int64_t x) {
    const int64_t h = x / 3, part = x % 3;
    if (h < nkv) {
      const bf16* src = (part == 1 ? V : K) + h * T * d;
      if (part == 2) pack_vnni(src, T, Tp, d, kv + h * hd);
      else pack_pairs_t(src, T, Tp, d, (part == 0 ? kt : vt) + h * hd);
      return;
    }
    const int64_t qh = h - nkv;
    if (part < 2) {
      pack_rows_t((part == 0 ? Q : dO) + qh * T * d, T, Tp, d, (part == 0 ? qt : dot) + qh * hd);
      return;
    }
    for (int64_t i = 0; i < T; ++i) {
      const bf16 *a = dO + (qh * T + i) * d, *b = Ou + (qh * T + i) * d;
      __m512 acc = _mm512_setzero_ps();
      for (int64_t c = 0; c < d; c += 16) {
        __m512 x1 = _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + c))), 16));
        __m512 x2 = _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + c))), 16));
        acc = _mm512_fmadd_ps(x1, x2, acc);
      }
      D[qh * Tp + i] = _mm512_reduce_add_ps(acc);
    }
  });
  at::Tensor dq = at::empty(q.sizes(), q.options());
  bf16* dQo = reinterpret_cast<bf16*>(dq.data_ptr());
  const std::vector<int64_t> work = items(s.nb, nq);
  deal(int64_t(work.size()), [&](int64_t t, int64_t x) {
    const int64_t bh = work[x] / s.nb, ib = work[x] % s.nb;
    const int64_t kvh = (bh / s.H) * s.Hkv + (bh % s.H) / g;
    const int64_t i0 = ib * BM, M = std::min(BM, T - i0), M2 = (M + 1) / 2 * 2;
    int64_t lo, n;
    s.cols(i0, M, lo, n);
    float *St = S + t * BM * CH, *dPt = dP + t * BM * CH, *dQt = dQ + t * BM * d;
    bf16 *Pvt = Pv + t * BM * CH, *dSvt = dSv + t * BM * CH, *dSt = dS + t * BM * CH;
    const __m512 sc = _mm512_set1_ps(s.scale);
    for (int64_t c0 = lo; c0 < lo + n; c0 += CH) {  // key columns in chunks: the blocks stay in L2
      const int64_t nc = std::min(CH, lo + n - c0);
      gemm(M, nc, d, Q + (bh * T + i0) * d, d, kt + kvh * hd + c0 * 2, Tp, St, nc, false);
      gemm(M, nc, d, dO + (bh * T + i0) * d, d, vt + kvh * hd + c0 * 2, Tp, dPt, nc, false);
      for (int64_t r = 0; r < M2; r += 2) {
        int64_t a0, b0, a1, b1;
        s.valid(i0 + r, c0, a0, b0);
        s.valid(i0 + r + 1, c0, a1, b1);
        const bool second = r + 1 < M;
        const __m512 l0 = _mm512_set1_ps(L[bh * T + i0 + r]), l1 = _mm512_set1_ps(second ? L[bh * T + i0 + r + 1] : 0);
        const __m512 D0 = _mm512_set1_ps(D[bh * Tp + i0 + r]), D1 = _mm512_set1_ps(second ? D[bh * Tp + i0 + r + 1] : 0);
        for (int64_t j = 0; j < nc; j += 16) {
          __m512 p0 = _mm512_maskz_mov_ps(valid_mask(j, a0, b0),
                                          exp512(_mm512_fmsub_ps(_mm512_loadu_ps(St + r * nc + j), sc, l0)));
          __m512 ds0 = _mm512_mul_ps(_mm512_mul_ps(p0, _mm512_sub_ps(_mm512_loadu_ps(dPt + r * nc + j), D0)), sc);
          __m512 p1 = _mm512_setzero_ps(), ds1 = _mm512_setzero_ps();
          if (second) {
            p1 = _mm512_maskz_mov_ps(valid_mask(j, a1, b1),
                                     exp512(_mm512_fmsub_ps(_mm512_loadu_ps(St + (r + 1) * nc + j), sc, l1)));
            ds1 = _mm512_mul_ps(_mm512_mul_ps(p1, _mm512_sub_ps(_mm512_loadu_ps(dPt + (r + 1) * nc + j), D1)), sc);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dSt + (r + 1) * nc + j), (__m256i)_mm512_cvtneps_pbh(ds1));
          }
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(dSt + r * nc + j), (__m256i)_mm512_cvtneps_pbh(ds0));
          store_pairs(p0, p1, Pvt + (r / 2 * nc + j) * 2);
          store_pairs(ds0, ds1, dSvt + (r / 2 * nc + j) * 2);
        }
      }
      gemm(M, d, nc, dSt, nc, kv + kvh * hd + c0 * d, d, dQt, d, c0 > lo);
      gemm(d, nc, M2, dot + bh * hd + i0, Tp, Pvt, nc, dvt + (t * nkv + kvh) * hd + c0, Tp, true);
      gemm(d, nc, M2, qt + bh * hd + i0, Tp, dSvt, nc, dkt + (t * nkv + kvh) * hd + c0, Tp, true);
    }
    for (int64_t r = 0; r < M; ++r) store_row(dQt + r * d, 1.f, d, dQo + (bh * T + i0 + r) * d);
  }, [&](int64_t t) {  // this thread's dV^T and dK^T start at zero
    std::fill(dvt + t * nkv * hd, dvt + (t + 1) * nkv * hd, 0.f);
    std::fill(dkt + t * nkv * hd, dkt + (t + 1) * nkv * hd, 0.f);
  });
  // sum the threads' dV^T, dK^T and transpose, in blocks of 16 keys
  const int64_t used = std::max<int64_t>(1, std::min<int64_t>(nt, int64_t(work.size())));
  at::Tensor dk = at::empty(k.sizes(), k.options()), dv = at::empty(v.sizes(), v.options());
  bf16* dKo = reinterpret_cast<bf16*>(dk.data_ptr());
  bf16* dVo = reinterpret_cast<bf16*>(dv.data_ptr());
  const int64_t jb = (T + 15) / 16;
  deal(nkv * jb, [&](int64_t, int64_t x) {
    const int64_t h = x / jb, j0 = x % jb * 16, nj = std::min<int64_t>(16, T - j0);
    for (int which = 0; which < 2; ++which) {
      const float* acc = which ? dkt : dvt;
      bf16* dst = which ? dKo : dVo;
      alignas(64) float tile[16][16];
      for (int64_t c0 = 0; c0 < d; c0 += 16) {
        for (int64_t c = 0; c < 16; ++c) {
          __m512 sum = _mm512_loadu_ps(acc + h * hd + (c0 + c) * Tp + j0);
          for (int64_t t = 1; t < used; ++t)
            sum = _mm512_add_ps(sum, _mm512_loadu_ps(acc + (t * nkv + h) * hd + (c0 + c) * Tp + j0));
          _mm512_store_ps(tile[c], sum);
        }
        for (int64_t jj = 0; jj < nj; ++jj)
          for (int64_t c = 0; c < 16; ++c) dst[(h * T + j0 + jj) * d + c0 + c] = to_bf16(tile[c][jj]);
      }
    }
  });
  return {dq, dk, dv};
}

}  // namespace

#ifndef TUNELAB_NS
#define TUNELAB_NS tunelab_attn
#endif

TORCH_LIBRARY(TUNELAB_NS, m) {
  m.def("fwd(Tensor q, Tensor k, Tensor v, float scale, int window) -> Tensor[]");
  m.def("bwd(Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, Tensor dout, float scale, int window) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(TUNELAB_NS, CPU, m) {
  m.impl("fwd", &fwd);
  m.impl("bwd", &bwd);
}
