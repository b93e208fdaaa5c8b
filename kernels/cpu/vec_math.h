// fewstep fused CPU kernels: sixteen-float vectors and the element-wise
// functions the kernels share (exp, SiLU, GELU, bf16 conversion).
//
// Torch-free. The vector type is GCC/Clang's vector extension: one zmm
// register under x86-64-v4, two ymm or four xmm under older ISA levels
// (the kernels are compiled once per level with target_clones). Every
// function is plain arithmetic on whole vectors, so there is no scalar
// path to keep in step: tails shorter than 16 go through a zero-padded
// copy (load_partial / store_partial).
#pragma once

#include <cstdint>
#include <cstring>

namespace fewstep::cpu::vec {

typedef float Vec16 __attribute__((vector_size(64)));
typedef int32_t IVec16 __attribute__((vector_size(64)));
typedef uint32_t UVec16 __attribute__((vector_size(64)));
typedef uint16_t HVec16 __attribute__((vector_size(32)));

inline constexpr int64_t kLanes = 16;

/// bfloat16 storage (the upper half of a float32).
struct Bf16 {
  uint16_t bits;
};

[[gnu::always_inline]] inline Vec16 splat(float x) { return Vec16{} + x; }

// Loads and stores of 16 elements; bf16 is widened to float32 exactly and
// narrowed with round-to-nearest-even (NaN stays a quiet NaN).
[[gnu::always_inline]] inline Vec16 load(const float* p) {
  Vec16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

[[gnu::always_inline]] inline Vec16 load(const Bf16* p) {
  HVec16 h;
  std::memcpy(&h, p, sizeof(h));
  const UVec16 wide = __builtin_convertvector(h, UVec16) << 16;
  return (Vec16)wide;
}

[[gnu::always_inline]] inline void store(float* p, Vec16 v) { std::memcpy(p, &v, sizeof(v)); }

[[gnu::always_inline]] inline void store(Bf16* p, Vec16 v) {
  const UVec16 u = (UVec16)v;
  const UVec16 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const auto is_nan = (u & 0x7fffffffu) > 0x7f800000u;
  const UVec16 bits = is_nan ? ((u >> 16) | 0x40u) : rounded;
  const HVec16 h = __builtin_convertvector(bits, HVec16);
  std::memcpy(p, &h, sizeof(h));
}

/// The first n < 16 elements, the rest zero.
template <typename T>
[[gnu::always_inline]] inline Vec16 load_partial(const T* p, int64_t n) {
  T buffer[kLanes] = {};
  std::memcpy(buffer, p, static_cast<size_t>(n) * sizeof(T));
  return load(buffer);
}

/// Stores the first n < 16 lanes.
template <typename T>
[[gnu::always_inline]] inline void store_partial(T* p, Vec16 v, int64_t n) {
  T buffer[kLanes];
  store(buffer, v);
  std::memcpy(p, buffer, static_cast<size_t>(n) * sizeof(T));
}

[[gnu::always_inline]] inline float to_float(float x) { return x; }
[[gnu::always_inline]] inline float to_float(Bf16 x) {
  const uint32_t wide = static_cast<uint32_t>(x.bits) << 16;
  float f;
  std::memcpy(&f, &wide, sizeof(f));
  return f;
}

/// Sum of the 16 lanes.
[[gnu::always_inline]] inline float hsum(Vec16 v) {
  float s = 0.0f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

/// e^r by its Taylor series to degree 7, for |r| ≤ ln2/2 ≈ 0.347 (the
/// remainder is below 7e-9 relative there); T is float or Vec16.
template <typename T>
[[gnu::always_inline]] inline T exp_taylor7(T r) {
  T p = r * (1.0f / 5040.0f) + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  return p * r + 1.0f;
}

/// e^x with a relative error below 3e-7 for x in [-87, 88]; inputs outside
/// are clamped to it (e^-87 ≈ 1.6e-38, e^88 ≈ 1.7e38), NaN propagates.
/// x = n·ln2 + r with n = round(x·log2 e), ln2 split in two parts (Cody &
/// Waite 1980) so that r is exact to a few ulp, |r| ≤ ln2/2; e^r by its
/// Taylor series to degree 7 (remainder below 7e-9), 2^n built in the
/// exponent bits.
[[gnu::always_inline]] inline Vec16 exp(Vec16 x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693145751953125f;  // 9 trailing zero bits: n·kLn2Hi is exact for |n| < 2^9
  constexpr float kLn2Lo = 1.42860682030941723e-6f;
  constexpr float kRound = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
  x = x < -87.0f ? splat(-87.0f) : x;
  x = x > 88.0f ? splat(88.0f) : x;
  const Vec16 n = (x * kLog2e + kRound) - kRound;
  const Vec16 r = (x - n * kLn2Hi) - n * kLn2Lo;
  const IVec16 bits = (__builtin_convertvector(n, IVec16) + 127) << 23;
  return exp_taylor7(r) * (Vec16)bits;
}

/// SiLU (Elfwing et al. 2018): x·σ(x) = x / (1 + e^−x).
[[gnu::always_inline]] inline Vec16 silu(Vec16 x) { return x / (1.0f + exp(-x)); }

/// The standard normal CDF Φ(x) = (1 + erf(x/√2)) / 2, with erf from
/// Abramowitz & Stegun (1964) 7.1.26 (absolute error ≤ 1.5e-7, the same
/// formula as LibTorch's vectorised erf): for z = |x|/√2,
/// erfc(z) ≈ t·(a1 + a2 t + a3 t² + a4 t³ + a5 t⁴)·e^(−z²), t = 1/(1 + p z).
/// For x < 0, Φ(x) = erfc(z)/2 directly (no cancellation in 1 − erf).
[[gnu::always_inline]] inline Vec16 normal_cdf(Vec16 x) {
  constexpr float kSqrtHalf = 0.707106781186547524f;
  const Vec16 z = (x < 0.0f ? -x : x) * kSqrtHalf;
  const Vec16 t = 1.0f / (1.0f + 0.3275911f * z);
  Vec16 poly = splat(1.061405429f);
  poly = poly * t - 1.453152027f;
  poly = poly * t + 1.421413741f;
  poly = poly * t - 0.284496736f;
  poly = poly * t + 0.254829592f;
  const Vec16 half_erfc = 0.5f * (poly * t) * exp(-z * z);
  return x < 0.0f ? half_erfc : 1.0f - half_erfc;
}

/// GELU (Hendrycks & Gimpel 2016), exact form: x·Φ(x).
[[gnu::always_inline]] inline Vec16 gelu(Vec16 x) { return x * normal_cdf(x); }

/// GELU, tanh form: x·(1 + tanh(√(2/π)(x + 0.044715x³)))/2, computed as
/// x·σ(2u) = x / (1 + e^(−2u)) (the same function, without tanh's cancellation).
[[gnu::always_inline]] inline Vec16 gelu_tanh(Vec16 x) {
  constexpr float kTwoSqrt2OverPi = 1.59576912160573071f;  // 2·√(2/π)
  const Vec16 u2 = kTwoSqrt2OverPi * (x + 0.044715f * x * x * x);
  return x / (1.0f + exp(-u2));
}

}  // namespace fewstep::cpu::vec
