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
#include <vector>

namespace {

using bf16 = uint16_t;
constexpr int64_t BM = 64;  // query rows per work item

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

// items longest first, dealt round-robin: thread t takes items t, t + nthreads, ...
template <typename F>
void run_items(const Shape& s, F fn) {
  std::vector<int64_t> items;
  for (int64_t ib = s.nb - 1; ib >= 0; --ib)
    for (int64_t bh = 0; bh < s.B * s.H; ++bh)
      if (ib * BM < s.T) items.push_back(bh * s.nb + ib);
  int64_t nt = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), int64_t(items.size())));
  at::parallel_for(0, nt, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      for (size_t x = t; x < items.size(); x += nt) fn(t, items[x] / s.nb, items[x] % s.nb);
  });
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
  std::vector<bf16> kt(s.B * s.Hkv * d * Tp), vv(s.B * s.Hkv * Tp * d);
  const bf16* Q = reinterpret_cast<const bf16*>(q.data_ptr());
  const bf16* K = reinterpret_cast<const bf16*>(k.data_ptr());
  const bf16* V = reinterpret_cast<const bf16*>(v.data_ptr());
  bf16* O = reinterpret_cast<bf16*>(out.data_ptr());
  float* L = lse.data_ptr<float>();
  at::parallel_for(0, s.B * s.Hkv, 1, [&](int64_t b, int64_t e) {
    for (int64_t h = b; h < e; ++h) {
      pack_pairs_t(K + h * s.T * d, s.T, Tp, d, kt.data() + h * d * Tp);
      pack_vnni(V + h * s.T * d, s.T, Tp, d, vv.data() + h * Tp * d);
    }
  });
  int64_t nt = at::get_num_threads();
  std::vector<float> S(nt * BM * Tp), Ob(nt * BM * d), inv(nt * BM);
  std::vector<bf16> P(nt * BM * Tp);
  run_items(s, [&](int64_t t, int64_t bh, int64_t ib) {
    const int64_t kvh = (bh / s.H) * s.Hkv + (bh % s.H) / g;
    const int64_t i0 = ib * BM, M = std::min(BM, s.T - i0);
    int64_t lo, n;
    s.cols(i0, M, lo, n);
    float* St = S.data() + t * BM * Tp;
    bf16* Pt = P.data() + t * BM * Tp;
    float* it = inv.data() + t * BM;
    gemm(M, n, d, Q + (bh * s.T + i0) * d, d, kt.data() + kvh * d * Tp + lo * 2, Tp, St, n, false);
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
    float* Ot = Ob.data() + t * BM * d;
    gemm(M, d, n, Pt, n, vv.data() + kvh * Tp * d + lo * d, d, Ot, d, false);
    for (int64_t r = 0; r < M; ++r)
      for (int64_t c = 0; c < d; ++c) O[(bh * s.T + i0 + r) * d + c] = to_bf16(Ot[r * d + c] * it[r]);
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
  const int64_t nt = at::get_num_threads();
  const bf16* Q = reinterpret_cast<const bf16*>(q.data_ptr());
  const bf16* K = reinterpret_cast<const bf16*>(k.data_ptr());
  const bf16* V = reinterpret_cast<const bf16*>(v.data_ptr());
  const bf16* Ou = reinterpret_cast<const bf16*>(out.data_ptr());
  const bf16* dO = reinterpret_cast<const bf16*>(dout.data_ptr());
  const float* L = lse.data_ptr<float>();
  std::vector<bf16> kt(nkv * d * Tp), vt(nkv * d * Tp), kv(nkv * Tp * d), qt(nq * d * Tp), dot(nq * d * Tp);
  std::vector<float> D(nq * Tp);
  at::parallel_for(0, nkv + nq, 1, [&](int64_t b, int64_t e) {
    for (int64_t x = b; x < e; ++x) {
      if (x < nkv) {
        pack_pairs_t(K + x * T * d, T, Tp, d, kt.data() + x * d * Tp);
        pack_pairs_t(V + x * T * d, T, Tp, d, vt.data() + x * d * Tp);
        pack_vnni(K + x * T * d, T, Tp, d, kv.data() + x * Tp * d);
        continue;
      }
      const int64_t h = x - nkv;
      pack_rows_t(Q + h * T * d, T, Tp, d, qt.data() + h * d * Tp);
      pack_rows_t(dO + h * T * d, T, Tp, d, dot.data() + h * d * Tp);
      for (int64_t i = 0; i < T; ++i) {
        float acc = 0.f;
        for (int64_t c = 0; c < d; ++c) acc += to_float(dO[(h * T + i) * d + c]) * to_float(Ou[(h * T + i) * d + c]);
        D[h * Tp + i] = acc;
      }
    }
  });
  // per-thread dV^T and dK^T (d x Tp per key head), summed after
  std::vector<float> dvt(nt * nkv * d * Tp, 0.f), dkt(nt * nkv * d * Tp, 0.f);
  std::vector<float> S(nt * BM * Tp), dP(nt * BM * Tp), dQ(nt * BM * d);
  std::vector<bf16> Pv(nt * BM * Tp), dSv(nt * BM * Tp), dS(nt * BM * Tp);
  at::Tensor dq = at::empty(q.sizes(), q.options());
  bf16* dQo = reinterpret_cast<bf16*>(dq.data_ptr());
  run_items(s, [&](int64_t t, int64_t bh, int64_t ib) {
    const int64_t kvh = (bh / s.H) * s.Hkv + (bh % s.H) / g;
    const int64_t i0 = ib * BM, M = std::min(BM, T - i0), M2 = (M + 1) / 2 * 2;
    int64_t lo, n;
    s.cols(i0, M, lo, n);
    float *St = S.data() + t * BM * Tp, *dPt = dP.data() + t * BM * Tp;
    bf16 *Pvt = Pv.data() + t * BM * Tp, *dSvt = dSv.data() + t * BM * Tp, *dSt = dS.data() + t * BM * Tp;
    gemm(M, n, d, Q + (bh * T + i0) * d, d, kt.data() + kvh * d * Tp + lo * 2, Tp, St, n, false);
    gemm(M, n, d, dO + (bh * T + i0) * d, d, vt.data() + kvh * d * Tp + lo * 2, Tp, dPt, n, false);
    const __m512 sc = _mm512_set1_ps(s.scale);
    for (int64_t r = 0; r < M2; r += 2) {
      int64_t a0, b0, a1, b1;
      s.valid(i0 + r, lo, a0, b0);
      s.valid(i0 + r + 1, lo, a1, b1);
      const bool second = r + 1 < M;
      const __m512 l0 = _mm512_set1_ps(L[bh * T + i0 + r]), l1 = _mm512_set1_ps(second ? L[bh * T + i0 + r + 1] : 0);
      const __m512 D0 = _mm512_set1_ps(D[bh * Tp + i0 + r]), D1 = _mm512_set1_ps(second ? D[bh * Tp + i0 + r + 1] : 0);
      for (int64_t j = 0; j < n; j += 16) {
        __m512 p0 = _mm512_maskz_mov_ps(valid_mask(j, a0, b0),
                                        exp512(_mm512_fmsub_ps(_mm512_loadu_ps(St + r * n + j), sc, l0)));
        __m512 ds0 = _mm512_mul_ps(_mm512_mul_ps(p0, _mm512_sub_ps(_mm512_loadu_ps(dPt + r * n + j), D0)), sc);
        __m512 p1 = _mm512_setzero_ps(), ds1 = _mm512_setzero_ps();
        if (second) {
          p1 = _mm512_maskz_mov_ps(valid_mask(j, a1, b1),
                                   exp512(_mm512_fmsub_ps(_mm512_loadu_ps(St + (r + 1) * n + j), sc, l1)));
          ds1 = _mm512_mul_ps(_mm512_mul_ps(p1, _mm512_sub_ps(_mm512_loadu_ps(dPt + (r + 1) * n + j), D1)), sc);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(dSt + (r + 1) * n + j), (__m256i)_mm512_cvtneps_pbh(ds1));
        }
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dSt + r * n + j), (__m256i)_mm512_cvtneps_pbh(ds0));
        store_pairs(p0, p1, Pvt + (r / 2 * n + j) * 2);
        store_pairs(ds0, ds1, dSvt + (r / 2 * n + j) * 2);
      }
    }
    float* dQt = dQ.data() + t * BM * d;
    gemm(M, d, n, dSt, n, kv.data() + kvh * Tp * d + lo * d, d, dQt, d, false);
    for (int64_t r = 0; r < M; ++r)
      for (int64_t c = 0; c < d; ++c) dQo[(bh * T + i0 + r) * d + c] = to_bf16(dQt[r * d + c]);
    float* dvt_t = dvt.data() + (t * nkv + kvh) * d * Tp;
    float* dkt_t = dkt.data() + (t * nkv + kvh) * d * Tp;
    gemm(d, n, M2, dot.data() + bh * d * Tp + i0, Tp, Pvt, n, dvt_t + lo, Tp, true);
    gemm(d, n, M2, qt.data() + bh * d * Tp + i0, Tp, dSvt, n, dkt_t + lo, Tp, true);
  });
  at::Tensor dk = at::empty(k.sizes(), k.options()), dv = at::empty(v.sizes(), v.options());
  bf16* dKo = reinterpret_cast<bf16*>(dk.data_ptr());
  bf16* dVo = reinterpret_cast<bf16*>(dv.data_ptr());
  at::parallel_for(0, nkv, 1, [&](int64_t b, int64_t e) {
    for (int64_t h = b; h < e; ++h)
      for (int64_t j = 0; j < T; ++j)
        for (int64_t c = 0; c < d; ++c) {
          float sk = 0.f, sv = 0.f;
          for (int64_t t = 0; t < nt; ++t) {
            sk += dkt[((t * nkv + h) * d + c) * Tp + j];
            sv += dvt[((t * nkv + h) * d + c) * Tp + j];
          }
          dKo[(h * T + j) * d + c] = to_bf16(sk);
          dVo[(h * T + j) * d + c] = to_bf16(sv);
        }
  });
  return {dq, dk, dv};
}

}  // namespace

TORCH_LIBRARY(tunelab_attn, m) {
  m.def("fwd(Tensor q, Tensor k, Tensor v, float scale, int window) -> Tensor[]");
  m.def("bwd(Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, Tensor dout, float scale, int window) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(tunelab_attn, CPU, m) {
  m.impl("fwd", &fwd);
  m.impl("bwd", &bwd);
}
