// AVX2 + FMA path, compiled with -mavx2 -mfma for this file only (the dispatcher calls it only after
// cpuid said the CPU has both). A block's 16 rows are two registers of 8 lanes.
//
// Why a permute and not a gather: the 16 rows of a block visit the same group g of x at once, so the
// group's m <= 16 inputs sit in one or two registers and each lane picks its input with one in-register
// permute by its decoded position; gathers are several times slower on current x86 cores.
#include <immintrin.h>

#include <cstring>

#include "nm_block.h"

namespace lbc_nm {
namespace {

// Batch rows per tile: 2 x kTile accumulators plus operands stay within the 16 ymm registers.
constexpr int kTile = 4;
// Groups per chunk: a chunk's values (~32 KiB) stay in L1/L2 while every batch tile reads them, so the
// weight stream comes from memory once per call whatever the batch.
constexpr int64_t kChunkBytes = 32 * 1024;

template <typename T>
__m256 load8(const T* p);

template <>
__m256 load8<float>(const float* p) {
  return _mm256_loadu_ps(p);
}

template <>
__m256 load8<uint16_t>(const uint16_t* p) {
  // bfloat16 is the top half of a float32.
  const __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
}

// W <= 4 little-endian bytes as one integer. Three bytes are read as 2 + 1: a 3-byte memcpy into a
// zeroed word goes through the stack and stalls on store forwarding (measured 5x slower for M=8).
template <int W>
uint32_t load_bytes(const uint8_t* p) {
  if constexpr (W == 3) {
    uint16_t low;
    std::memcpy(&low, p, 2);
    return static_cast<uint32_t>(low) | (static_cast<uint32_t>(p[2]) << 16);
  } else if constexpr (W == 1) {
    return p[0];
  } else if constexpr (W == 2) {
    uint16_t word;
    std::memcpy(&word, p, 2);
    return word;
  } else {
    uint32_t word;
    std::memcpy(&word, p, 4);
    return word;
  }
}

// The 8 fields of `W` bits starting at `record` (W bytes: 8 lanes x W bits).
template <int W>
__m256i fields(const uint8_t* record) {
  const uint32_t word = load_bytes<W>(record);
  const __m256i shifts = _mm256_setr_epi32(0, W, 2 * W, 3 * W, 4 * W, 5 * W, 6 * W, 7 * W);
  return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(word)), shifts),
                          _mm256_set1_epi32((1 << W) - 1));
}

template <int W>
__m256i masks(const uint8_t* record) {
  if constexpr (W == 4) {
    return fields<4>(record);
  } else if constexpr (W == 8) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(record)));
  } else {
    return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(record)));
  }
}

// Position of each lane's lowest set bit, which is then cleared: the exponent of the isolated bit
// converted to float (exact, bits < 2^16).
__m256i pop_lowest(__m256i& bits) {
  const __m256i low = _mm256_and_si256(bits, _mm256_sub_epi32(_mm256_setzero_si256(), bits));
  bits = _mm256_xor_si256(bits, low);
  const __m256i exponent = _mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(low)), 23);
  return _mm256_sub_epi32(exponent, _mm256_set1_epi32(127));
}

// x[g*m + position] per lane; WIDE when m > 8 (positions 8..15 come from the second register).
template <bool WIDE>
__m256 pick(__m256 lo, __m256 hi, __m256i position) {
  const __m256 from_lo = _mm256_permutevar8x32_ps(lo, position);
  if constexpr (!WIDE) {
    return from_lo;
  } else {
    const __m256 from_hi = _mm256_permutevar8x32_ps(hi, position);
    return _mm256_blendv_ps(from_lo, from_hi, _mm256_castsi256_ps(_mm256_slli_epi32(position, 28)));
  }
}

template <typename T, bool BITMASK, int W, bool WIDE, int TILE>
void tile(const BlockArgs& a, int64_t g0, int64_t g1, int64_t b0) {
  const T* values = static_cast<const T*>(a.values);
  __m256 acc[TILE][2];
  for (int b = 0; b < TILE; ++b) {
    acc[b][0] = _mm256_loadu_ps(a.acc + (b0 + b) * kLanes);
    acc[b][1] = _mm256_loadu_ps(a.acc + (b0 + b) * kLanes + 8);
  }
  const float* x = a.x + b0 * a.x_stride;
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* codes = a.codes + g * a.code_bytes;
    const T* v = values + g * a.n * kLanes;
    __m256 xlo[TILE], xhi[TILE];
    for (int b = 0; b < TILE; ++b) {
      xlo[b] = _mm256_loadu_ps(x + b * a.x_stride + g * a.m);
      xhi[b] = WIDE ? _mm256_loadu_ps(x + b * a.x_stride + g * a.m + 8) : xlo[b];
    }
    __m256i mask0, mask1;
    if constexpr (BITMASK) {
      mask0 = masks<W>(codes);
      mask1 = masks<W>(codes + W);
    }
    for (int k = 0; k < a.n; ++k) {
      __m256i p0, p1;
      if constexpr (BITMASK) {
        p0 = pop_lowest(mask0);
        p1 = pop_lowest(mask1);
      } else {
        p0 = fields<W>(codes + k * 2 * W);
        p1 = fields<W>(codes + k * 2 * W + W);
      }
      const __m256 v0 = load8(v + k * kLanes);
      const __m256 v1 = load8(v + k * kLanes + 8);
      for (int b = 0; b < TILE; ++b) {
        acc[b][0] = _mm256_fmadd_ps(v0, pick<WIDE>(xlo[b], xhi[b], p0), acc[b][0]);
        acc[b][1] = _mm256_fmadd_ps(v1, pick<WIDE>(xlo[b], xhi[b], p1), acc[b][1]);
      }
    }
  }
  for (int b = 0; b < TILE; ++b) {
    _mm256_storeu_ps(a.acc + (b0 + b) * kLanes, acc[b][0]);
    _mm256_storeu_ps(a.acc + (b0 + b) * kLanes + 8, acc[b][1]);
  }
}

template <typename T, bool BITMASK, int W, bool WIDE>
void run(const BlockArgs& a) {
  const int64_t group_bytes = static_cast<int64_t>(a.n) * kLanes * sizeof(T);
  const int64_t chunk = kChunkBytes / group_bytes > 0 ? kChunkBytes / group_bytes : 1;
  for (int64_t g0 = 0; g0 < a.groups; g0 += chunk) {
    const int64_t g1 = g0 + chunk < a.groups ? g0 + chunk : a.groups;
    int64_t b = 0;
    for (; b + kTile <= a.batch; b += kTile) tile<T, BITMASK, W, WIDE, kTile>(a, g0, g1, b);
    for (; b < a.batch; ++b) tile<T, BITMASK, W, WIDE, 1>(a, g0, g1, b);
  }
}

template <typename T, bool WIDE>
void by_code(const BlockArgs& a) {
  if (a.bitmask) {
    switch (a.code_bits) {
      case 4: return run<T, true, 4, WIDE>(a);
      case 8: return run<T, true, 8, WIDE>(a);
      default: return run<T, true, 16, WIDE>(a);
    }
  }
  switch (a.code_bits) {
    case 1: return run<T, false, 1, WIDE>(a);
    case 2: return run<T, false, 2, WIDE>(a);
    case 3: return run<T, false, 3, WIDE>(a);
    default: return run<T, false, 4, WIDE>(a);
  }
}

template <typename T>
void block(const BlockArgs& a) {
  if (a.m > 8) {
    by_code<T, true>(a);
  } else {
    by_code<T, false>(a);
  }
}

}  // namespace

void block_avx2_f32(const BlockArgs& args) { block<float>(args); }
void block_avx2_bf16(const BlockArgs& args) { block<uint16_t>(args); }

}  // namespace lbc_nm
