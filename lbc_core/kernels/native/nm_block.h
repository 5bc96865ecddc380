// One row block of the packed N:M linear, as every ISA path computes it.
//
// This header is included by files compiled with different -m flags, so it declares plain data and
// functions only: an inline function defined here could be emitted by an AVX-512 file and picked by the
// linker for every caller, which crashes with SIGILL on CPUs without AVX-512.
#pragma once

#include <cstdint>

namespace lbc_nm {

// Output rows per block: one AVX-512 register, two AVX2 registers. Fixed for every ISA so that a packed
// weight is the same bytes whichever path runs it (and whichever machine packed it).
constexpr int kLanes = 16;

// The packed operand of one block of kLanes output rows (see lbc_core/kernels/packing.py):
//   values [groups, n, kLanes]  the k-th kept value of each row's group g, lane = row in the block;
//   codes  [groups, code_bytes] per group either
//     - index records (bitmask == false): n records of kLanes fields of `code_bits` bits, the k-th kept
//       position of each row; or
//     - one mask record (bitmask == true): kLanes fields of `code_bits` bits (4, 8 or 16), bit p set
//       when position p is kept (exactly n bits set; the k-th set bit is the k-th value).
//   A record packs lane l's field at bits [l * code_bits, (l + 1) * code_bits), little-endian, so the 8
//   lanes of one AVX2 register start at a byte boundary (byte 0 and byte code_bits).
struct BlockArgs {
  const float* x;         // [batch, x_stride] fp32; each row holds `in` values then >= kLanes zeros
  int64_t batch;
  int64_t x_stride;
  const void* values;     // float, or bfloat16 as uint16_t bits
  const uint8_t* codes;
  int64_t groups;         // in / m
  int n;
  int m;
  int code_bits;
  bool bitmask;
  int64_t code_bytes;     // per group
  float* acc;             // [batch, kLanes]: the caller zeroes it, the kernel adds x @ W_block^T
  // x as bfloat16 bits instead, for the path that multiplies bf16 (x is null then): same batch and
  // x_stride, each row holding `in` values then >= 2 * kLanes zeros (a window of two groups).
  const uint16_t* x_bf16 = nullptr;
};

using BlockFn = void (*)(const BlockArgs&);

void block_scalar_f32(const BlockArgs& args);
void block_scalar_bf16(const BlockArgs& args);
void block_avx2_f32(const BlockArgs& args);
void block_avx2_bf16(const BlockArgs& args);
void block_avx512_f32(const BlockArgs& args);
void block_avx512_bf16(const BlockArgs& args);
void block_avx512bf16_bf16(const BlockArgs& args);  // reads x_bf16

}  // namespace lbc_nm
