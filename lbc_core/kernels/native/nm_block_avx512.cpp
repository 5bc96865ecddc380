// AVX-512F path, compiled with -mavx512f for this file only (the dispatcher calls it only after cpuid
// said the CPU has AVX-512F). A block's 16 rows are one register; any m <= 16 inputs of a group fit one
// register, so each lane picks its input with a single permute.
#include <immintrin.h>

#include <cstring>

#include "nm_block.h"

namespace lbc_nm {
namespace {

// 32 zmm registers leave room for 8 accumulators plus the x groups of a tile.
constexpr int kTile = 8;
constexpr int64_t kChunkBytes = 32 * 1024;  // see nm_block_avx2.cpp

template <typename T>
__m512 load16(const T* p);

template <>
__m512 load16<float>(const float* p) {
  return _mm512_loadu_ps(p);
}

template <>
__m512 load16<uint16_t>(const uint16_t* p) {
  const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
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

// The 16 fields of `W` bits starting at `record`: lanes 0-7 from its first W bytes, 8-15 from the next W.
template <int W>
__m512i fields(const uint8_t* record) {
  const uint32_t lo = load_bytes<W>(record), hi = load_bytes<W>(record + W);
  const __m512i words = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(static_cast<int>(lo))),
                                           _mm256_set1_epi32(static_cast<int>(hi)), 1);
  const __m512i shifts = _mm512_setr_epi32(0, W, 2 * W, 3 * W, 4 * W, 5 * W, 6 * W, 7 * W, 0, W, 2 * W, 3 * W,
                                           4 * W, 5 * W, 6 * W, 7 * W);
  return _mm512_and_si512(_mm512_srlv_epi32(words, shifts), _mm512_set1_epi32((1 << W) - 1));
}

template <int W>
__m512i masks(const uint8_t* record) {
  if constexpr (W == 4) {
    return fields<4>(record);
  } else if constexpr (W == 8) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(record)));
  } else {
    return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(record)));
  }
}

// See pop_lowest in nm_block_avx2.cpp.
__m512i pop_lowest(__m512i& bits) {
  const __m512i low = _mm512_and_si512(bits, _mm512_sub_epi32(_mm512_setzero_si512(), bits));
  bits = _mm512_xor_si512(bits, low);
  const __m512i exponent = _mm512_srli_epi32(_mm512_castps_si512(_mm512_cvtepi32_ps(low)), 23);
  return _mm512_sub_epi32(exponent, _mm512_set1_epi32(127));
}

template <typename T, bool BITMASK, int W, int TILE>
void tile(const BlockArgs& a, int64_t g0, int64_t g1, int64_t b0) {
  const T* values = static_cast<const T*>(a.values);
  __m512 acc[TILE];
  for (int b = 0; b < TILE; ++b) acc[b] = _mm512_loadu_ps(a.acc + (b0 + b) * kLanes);
  const float* x = a.x + b0 * a.x_stride;
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* codes = a.codes + g * a.code_bytes;
    const T* v = values + g * a.n * kLanes;
    __m512 xg[TILE];
    for (int b = 0; b < TILE; ++b) xg[b] = _mm512_loadu_ps(x + b * a.x_stride + g * a.m);
    __m512i mask;
    if constexpr (BITMASK) mask = masks<W>(codes);
    for (int k = 0; k < a.n; ++k) {
      __m512i position;
      if constexpr (BITMASK) {
        position = pop_lowest(mask);
      } else {
        position = fields<W>(codes + k * 2 * W);
      }
      const __m512 vk = load16(v + k * kLanes);
      for (int b = 0; b < TILE; ++b) {
        acc[b] = _mm512_fmadd_ps(vk, _mm512_permutexvar_ps(position, xg[b]), acc[b]);
      }
    }
  }
  for (int b = 0; b < TILE; ++b) _mm512_storeu_ps(a.acc + (b0 + b) * kLanes, acc[b]);
}

template <typename T, bool BITMASK, int W>
void run(const BlockArgs& a) {
  const int64_t group_bytes = static_cast<int64_t>(a.n) * kLanes * sizeof(T);
  const int64_t chunk = kChunkBytes / group_bytes > 0 ? kChunkBytes / group_bytes : 1;
  for (int64_t g0 = 0; g0 < a.groups; g0 += chunk) {
    const int64_t g1 = g0 + chunk < a.groups ? g0 + chunk : a.groups;
    int64_t b = 0;
    for (; b + kTile <= a.batch; b += kTile) tile<T, BITMASK, W, kTile>(a, g0, g1, b);
    for (; b + 4 <= a.batch; b += 4) tile<T, BITMASK, W, 4>(a, g0, g1, b);
    for (; b < a.batch; ++b) tile<T, BITMASK, W, 1>(a, g0, g1, b);
  }
}

template <typename T>
void block(const BlockArgs& a) {
  if (a.bitmask) {
    switch (a.code_bits) {
      case 4: return run<T, true, 4>(a);
      case 8: return run<T, true, 8>(a);
      default: return run<T, true, 16>(a);
    }
  }
  switch (a.code_bits) {
    case 1: return run<T, false, 1>(a);
    case 2: return run<T, false, 2>(a);
    case 3: return run<T, false, 3>(a);
    default: return run<T, false, 4>(a);
  }
}

}  // namespace

void block_avx512_f32(const BlockArgs& args) { block<float>(args); }
void block_avx512_bf16(const BlockArgs& args) { block<uint16_t>(args); }

}  // namespace lbc_nm
