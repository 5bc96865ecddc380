// The portable path, always built without ISA flags: plain loops over the packed format, the reference
// the vector paths are tested against and the path every x86-64 (or other) CPU can run.
#include <cstring>

#include "nm_block.h"

namespace lbc_nm {
namespace {

float to_float(float v) { return v; }

float to_float(uint16_t bf16_bits) {
  const uint32_t bits = static_cast<uint32_t>(bf16_bits) << 16;
  float v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

// Field `lane` of a record of `width`-bit fields, reading only the bytes the field covers.
uint32_t field(const uint8_t* record, int lane, int width) {
  const int first_bit = lane * width;
  const int byte = first_bit >> 3;
  const int shift = first_bit & 7;
  uint32_t word = 0;
  for (int b = 0; b * 8 < shift + width; ++b) {
    word |= static_cast<uint32_t>(record[byte + b]) << (8 * b);
  }
  return (word >> shift) & ((1u << width) - 1u);
}

template <typename T>
void block(const BlockArgs& a) {
  const T* values = static_cast<const T*>(a.values);
  int positions[kLanes][kLanes];  // [k][lane]; n < m <= 16
  for (int64_t g = 0; g < a.groups; ++g) {
    const uint8_t* codes = a.codes + g * a.code_bytes;
    for (int lane = 0; lane < kLanes; ++lane) {
      if (a.bitmask) {
        uint32_t mask = field(codes, lane, a.code_bits);
        for (int k = 0; k < a.n; ++k) {
          int p = 0;
          while (!((mask >> p) & 1u)) ++p;
          positions[k][lane] = p;
          mask &= mask - 1u;
        }
      } else {
        for (int k = 0; k < a.n; ++k) {
          positions[k][lane] = static_cast<int>(field(codes + k * 2 * a.code_bits, lane, a.code_bits));
        }
      }
    }
    const T* v = values + g * a.n * kLanes;
    for (int64_t b = 0; b < a.batch; ++b) {
      const float* xg = a.x + b * a.x_stride + g * a.m;
      float* acc = a.acc + b * kLanes;
      for (int k = 0; k < a.n; ++k) {
        for (int lane = 0; lane < kLanes; ++lane) {
          acc[lane] += to_float(v[k * kLanes + lane]) * xg[positions[k][lane]];
        }
      }
    }
  }
}

}  // namespace

void block_scalar_f32(const BlockArgs& args) { block<float>(args); }
void block_scalar_bf16(const BlockArgs& args) { block<uint16_t>(args); }

}  // namespace lbc_nm
