// Row-major GEMM on tiles over the BLAS torch itself carries (MKL in the x86 wheels, OpenBLAS on
// ARM), through the standard Fortran symbols libtorch_cpu exports: one BLAS per process, no second
// library whose threads or symbols could fight torch's. Called from inside the kernels' parallel
// regions, where the BLAS runs single-threaded on each tile.
#pragma once

#include <cstdint>

extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c, const int* ldc);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc);
// MKL's thread-local thread count (weak: absent from BLAS builds that are not MKL).
int MKL_Set_Num_Threads_Local(int nt) __attribute__((weak));
}

namespace longhaul::cpu {

// For the lifetime of this object the calling thread's BLAS calls run single-threaded. Inside
// the kernels' own parallel regions MKL would otherwise pick its multi-threaded code paths (and
// spin in OpenMP barriers) on every tile.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : saved_(MKL_Set_Num_Threads_Local ? MKL_Set_Num_Threads_Local(1) : -1) {}
  ~SingleThreadedBlas() {
    if (saved_ >= 0) MKL_Set_Num_Threads_Local(saved_);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int saved_;
};

inline void blas_gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* alpha,
                      const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
                      const int* ldc) {
  sgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void blas_gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k, const double* alpha,
                      const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
                      const int* ldc) {
  dgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// C[m×n] = alpha · op(A)[m×k] · op(B)[k×n] + beta · C; row-major, leading dimensions in elements
// (tile sizes and row strides fit in int).
template <typename T>
inline void gemm_rm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                    const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands.
  const char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
  const int mm = static_cast<int>(n), nn = static_cast<int>(m), kk = static_cast<int>(k);
  const int la = static_cast<int>(ldb), lb = static_cast<int>(lda), lc = static_cast<int>(ldc);
  blas_gemm(&ta, &tb, &mm, &nn, &kk, &alpha, b, &la, a, &lb, &beta, c, &lc);
}

}  // namespace longhaul::cpu
