// bfloat16 path on AVX-512 BF16 dot products, compiled with -mavx512f -mavx512bw -mavx512bf16 for this
// file only (the dispatcher calls it only after cpuid said the CPU has all three, for bfloat16 operands).
//
// `vdpbf16ps acc, a, b` adds a[2i] * b[2i] + a[2i+1] * b[2i+1] into float32 lane i: two bf16 products per
// lane and instruction, where the avx512 path widens each kept value to float32 and needs one FMA per
// product. Lane i is output row i of the block, so a pair is two kept values of the same row:
//   - even N: the kept values 2j and 2j+1 of one group;
//   - odd N: the kept values of two consecutive groups in sequence (g's last value pairs with g+1's first),
//     so the pair's inputs come from a window of 2M <= 32 inputs; an odd last group pairs its last value
//     with a zero weight and a zero input (the row padding), never with anything that could be inf or NaN.
// The weights of pair j are the value rows 2j and 2j+1 of the packed [groups, n, 16] array, 32 contiguous
// bf16 that one permute interleaves; the inputs of pair j are one permute of the group's (or window's)
// bf16 inputs, loaded with exactly their bytes, by the two positions packed as a 16-bit index each.
#include <immintrin.h>

#include <cstring>

#include "nm_block.h"

namespace lbc_nm {
namespace {

constexpr int kTile = 16;  // accumulators; the inputs are permuted straight from memory
constexpr int64_t kChunkBytes = 32 * 1024;  // see nm_block_avx2.cpp

// See load_bytes in nm_block_avx512.cpp (this file keeps its own copy: it is compiled with other flags).
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

template <int W>
__m512i fields(const uint8_t* record) {
  if constexpr (W == 2) {
    // A 2-bit record is 4 bytes with lane l at bits [2l, 2l + 2): one broadcast load, one shift.
    int32_t word;
    std::memcpy(&word, record, 4);
    const __m512i shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(word), shifts), _mm512_set1_epi32(3));
  }
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

// Word 2i <- word i, word 2i+1 <- word 16+i: two value rows of 16 lanes into 16 lane pairs.
__m512i interleave_index() {
  return _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20,
                          4, 19, 3, 18, 2, 17, 1, 16, 0);
}

// The weights of a pair: value rows k and k+1 (32 contiguous bf16 from `rows`) as 16 lane pairs.
__m512bh pair_weights(__m512i interleave, __m512i rows) {
  return reinterpret_cast<__m512bh>(_mm512_permutexvar_epi16(interleave, rows));
}

// Lane i: position p0 in the low 16 bits, p1 in the high 16 (a word index for each half of the pair).
__m512i pair_index(__m512i p0, __m512i p1) { return _mm512_or_si512(p0, _mm512_slli_epi32(p1, 16)); }

// The kept positions of one group (each lane's k-th kept input), one per call, in ascending k.
template <bool BITMASK, int W>
struct Positions {
  const uint8_t* codes;
  __m512i mask;

  explicit Positions(const uint8_t* group_codes) : codes(group_codes) {
    if constexpr (BITMASK) mask = masks<W>(group_codes);
  }

  __m512i at(int k) {
    if constexpr (BITMASK) {
      (void)k;
      return pop_lowest(mask);
    } else {
      return fields<W>(codes + k * 2 * W);
    }
  }
};

// A row's window of inputs (a group, or two for odd N) in a register, loaded with exactly its bytes (8, 16,
// 32 or 64) by a plain load: no load wider than needed (a 64-byte load at an 8-byte step splits a cache
// line 7 times in 8) and no shuffle. The permute indices of a window stay below its size, so the
// register's bytes above it are never read.
template <int BYTES>
__m512i load_window(const uint16_t* p) {
  if constexpr (BYTES == 8) {
    return _mm512_castsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (BYTES == 16) {
    return _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (BYTES == 32) {
    return _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  } else {
    return _mm512_loadu_si512(p);
  }
}

// Adds pair (w2, idx) of every batch row of the tile: the row's window (from `window`, one row every
// `stride`) permuted by the pair's two positions (see pair_index), dot product with the pair's weights.
template <int BYTES, int TILE>
inline void accumulate(__m512 (&acc)[TILE], const uint16_t* window, int64_t stride, __m512bh w, __m512i idx) {
  for (int b = 0; b < TILE; ++b) {
    const __m512i inputs = _mm512_permutexvar_epi16(idx, load_window<BYTES>(window + b * stride));
    acc[b] = _mm512_dpbf16_ps(acc[b], w, reinterpret_cast<__m512bh>(inputs));
  }
}

// NF: N known at compile time (1, 2 or 4: 1:4, 1:16, 2:4, 2:8, 4:8, ...), or 0 to read it from the args.
// A fixed N unrolls the pair loop, which lets the compiler keep a tile's input windows in registers across
// a group's pairs (measured 1.25x faster for 2:4 at batch 32 than the runtime loop).

// Even N: pairs within a group (a window of M <= 16 inputs).
template <bool BITMASK, int W, int BYTES, int TILE, int NF>
void tile_even(const BlockArgs& a, int64_t g0, int64_t g1, int64_t b0) {
  const int n = NF ? NF : a.n;
  const uint16_t* values = static_cast<const uint16_t*>(a.values);
  const __m512i interleave = interleave_index();
  __m512 acc[TILE];
  for (int b = 0; b < TILE; ++b) acc[b] = _mm512_loadu_ps(a.acc + (b0 + b) * kLanes);
  const uint16_t* x = a.x_bf16 + b0 * a.x_stride;
  for (int64_t g = g0; g < g1; ++g) {
    const uint16_t* xg = x + g * a.m;
    Positions<BITMASK, W> positions(a.codes + g * a.code_bytes);
    const uint16_t* v = values + g * n * kLanes;
    for (int k = 0; k < n; k += 2) {
      const __m512i first = positions.at(k);
      const __m512i idx = pair_index(first, positions.at(k + 1));
      const __m512bh w = pair_weights(interleave, _mm512_loadu_si512(v + k * kLanes));
      accumulate<BYTES, TILE>(acc, xg, a.x_stride, w, idx);
    }
  }
  for (int b = 0; b < TILE; ++b) _mm512_storeu_ps(a.acc + (b0 + b) * kLanes, acc[b]);
}

// Odd N: groups g, g+1 as one window of 2M inputs and 2N kept values; g1 - g0 is even except at the last
// group of the layer, whose unpaired value meets a zero weight and the zero input at window position M.
template <bool BITMASK, int W, int BYTES, int TILE, int NF>
void tile_odd(const BlockArgs& a, int64_t g0, int64_t g1, int64_t b0) {
  const int n = NF ? NF : a.n;
  const uint16_t* values = static_cast<const uint16_t*>(a.values);
  const __m512i interleave = interleave_index();
  const __m512i second = _mm512_set1_epi32(a.m);  // window offset of group g+1's inputs
  __m512 acc[TILE];
  for (int b = 0; b < TILE; ++b) acc[b] = _mm512_loadu_ps(a.acc + (b0 + b) * kLanes);
  const uint16_t* x = a.x_bf16 + b0 * a.x_stride;
  for (int64_t g = g0; g < g1; g += 2) {
    const uint16_t* xg = x + g * a.m;
    const uint16_t* v = values + g * n * kLanes;  // 2n value rows when g+1 exists
    Positions<BITMASK, W> first(a.codes + g * a.code_bytes);
    int k = 0;
    for (; k + 1 < n; k += 2) {
      const __m512i p = first.at(k);
      const __m512i idx = pair_index(p, first.at(k + 1));
      const __m512bh w = pair_weights(interleave, _mm512_loadu_si512(v + k * kLanes));
      accumulate<BYTES, TILE>(acc, xg, a.x_stride, w, idx);
    }
    const __m512i last = first.at(k);  // k == n - 1
    if (g + 1 == g1 && (g1 - g0) % 2 == 1) {
      // Value row k and zeros (no row k+1 to read), against window position M: the zero row padding.
      const __m512i rows = _mm512_maskz_loadu_epi16(0xFFFF, v + k * kLanes);
      accumulate<BYTES, TILE>(acc, xg, a.x_stride, pair_weights(interleave, rows), pair_index(last, second));
      break;
    }
    Positions<BITMASK, W> next(a.codes + (g + 1) * a.code_bytes);
    const __m512i idx = pair_index(last, _mm512_add_epi32(next.at(0), second));
    const __m512bh w = pair_weights(interleave, _mm512_loadu_si512(v + k * kLanes));
    accumulate<BYTES, TILE>(acc, xg, a.x_stride, w, idx);
    // Group g+1's values 1..n-1 are value rows n+1.. of the window: pairs (1,2), (3,4), ...
    for (int j = 1; j + 1 < n; j += 2) {
      const __m512i p = _mm512_add_epi32(next.at(j), second);
      const __m512i q = _mm512_add_epi32(next.at(j + 1), second);
      const __m512bh w = pair_weights(interleave, _mm512_loadu_si512(v + (n + j) * kLanes));
      accumulate<BYTES, TILE>(acc, xg, a.x_stride, w, pair_index(p, q));
    }
  }
  for (int b = 0; b < TILE; ++b) _mm512_storeu_ps(a.acc + (b0 + b) * kLanes, acc[b]);
}

template <bool BITMASK, int W, int BYTES, int TILE>
void tile_of(const BlockArgs& a, int64_t g0, int64_t g1, int64_t b0) {
  switch (a.n) {
    case 1: return tile_odd<BITMASK, W, BYTES, TILE, 1>(a, g0, g1, b0);
    case 2: return tile_even<BITMASK, W, BYTES, TILE, 2>(a, g0, g1, b0);
    case 4: return tile_even<BITMASK, W, BYTES, TILE, 4>(a, g0, g1, b0);
    default:
      if (a.n % 2 == 1) return tile_odd<BITMASK, W, BYTES, TILE, 0>(a, g0, g1, b0);
      return tile_even<BITMASK, W, BYTES, TILE, 0>(a, g0, g1, b0);
  }
}

// The window load sizes a code width can need, so only those are compiled: M <= 2^W (index codes) or
// M <= W (bitmask), so a window of up to 2M bf16 takes at most 4M bytes; index codes of W >= 3 bits have
// M > 4 as packed (pack_weight picks the fewest bits), and a wider load than a window needs is always
// safe (it stays inside the row's 2 * kLanes padding), so smaller windows take the smallest size compiled.
template <bool BITMASK, int W>
constexpr int kMaxWindowBytes = BITMASK ? 4 * W : 4 << W;
template <bool BITMASK, int W>
constexpr int kMinWindowBytes = BITMASK || W <= 2 ? 8 : (W == 3 ? 16 : 32);

template <bool BITMASK, int W, int TILE>
void tile(const BlockArgs& a, int64_t g0, int64_t g1, int64_t b0) {
  constexpr int lo = kMinWindowBytes<BITMASK, W>, hi = kMaxWindowBytes<BITMASK, W>;
  const int window_bytes = (a.n % 2 == 1 ? 2 : 1) * a.m * 2;
  if constexpr (lo <= 8) {
    if (window_bytes <= 8) return tile_of<BITMASK, W, 8, TILE>(a, g0, g1, b0);
  }
  if constexpr (lo <= 16 && hi >= 16) {
    if (window_bytes <= 16) return tile_of<BITMASK, W, 16, TILE>(a, g0, g1, b0);
  }
  if constexpr (lo <= 32 && hi >= 32) {
    if (window_bytes <= 32) return tile_of<BITMASK, W, 32, TILE>(a, g0, g1, b0);
  }
  if constexpr (hi >= 64) tile_of<BITMASK, W, 64, TILE>(a, g0, g1, b0);
}

template <bool BITMASK, int W>
void run(const BlockArgs& a) {
  const int64_t group_bytes = static_cast<int64_t>(a.n) * kLanes * sizeof(uint16_t);
  // Odd N pairs groups, so a chunk holds an even number of them.
  int64_t chunk = kChunkBytes / group_bytes > 2 ? kChunkBytes / group_bytes : 2;
  chunk -= chunk % 2;
  for (int64_t g0 = 0; g0 < a.groups; g0 += chunk) {
    const int64_t g1 = g0 + chunk < a.groups ? g0 + chunk : a.groups;
    int64_t b = 0;
    for (; b + kTile <= a.batch; b += kTile) tile<BITMASK, W, kTile>(a, g0, g1, b);
    for (; b + 8 <= a.batch; b += 8) tile<BITMASK, W, 8>(a, g0, g1, b);
    for (; b + 4 <= a.batch; b += 4) tile<BITMASK, W, 4>(a, g0, g1, b);
    for (; b < a.batch; ++b) tile<BITMASK, W, 1>(a, g0, g1, b);
  }
}

}  // namespace

void block_avx512bf16_bf16(const BlockArgs& a) {
  if (a.bitmask) {
    switch (a.code_bits) {
      case 4: return run<true, 4>(a);
      case 8: return run<true, 8>(a);
      default: return run<true, 16>(a);
    }
  }
  switch (a.code_bits) {
    case 1: return run<false, 1>(a);
    case 2: return run<false, 2>(a);
    case 3: return run<false, 3>(a);
    default: return run<false, 4>(a);
  }
}

}  // namespace lbc_nm
