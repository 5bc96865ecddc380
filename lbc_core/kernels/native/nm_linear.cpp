// The lbc_nm operators: y = x @ W^T + b for a packed N:M weight, with the ISA path chosen at run time.
//
// Compiled without -m flags: it only checks arguments, converts x, splits the output rows over torch's
// thread pool and calls the block function of the chosen path.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <vector>

#include "nm_block.h"

namespace lbc_nm {

#ifdef LBC_NM_HAVE_X86
// Weak: resolves to null when the library was linked without nm_block_avx512bf16.cpp.
__attribute__((weak)) void block_avx512bf16_bf16(const BlockArgs& args);
#endif

namespace {

// Every path, in order of preference. avx512bf16 is the avx512 path plus bfloat16 dot products for
// bfloat16 operands: float32 operands run the avx512 block functions under it (see block_path).
constexpr const char* kIsas[] = {"scalar", "avx2", "avx512", "avx512bf16"};

// __builtin_cpu_supports reports AVX-512 features only when the OS saves the AVX-512 state (XCR0).
bool cpu_has(const std::string& isa) {
#if defined(__x86_64__) || defined(__i386__)
  if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == "avx512") return __builtin_cpu_supports("avx512f");
  if (isa == "avx512bf16") {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16");
  }
#endif
  return isa == "scalar";
}

bool built_with(const std::string& isa) {
#ifdef LBC_NM_HAVE_X86
  // Its source is optional in the build (a compiler without -mavx512bf16 leaves it out): the weak
  // declaration at the top of this file is then null.
  if (isa == "avx512bf16") return block_avx512bf16_bf16 != nullptr;
  return true;
#else
  return isa == "scalar";
#endif
}

bool runnable(const std::string& isa) { return built_with(isa) && cpu_has(isa); }

// The paths this machine runs, comma-separated in order of preference.
std::string available_isas() {
  std::string out;
  for (const char* isa : kIsas) {
    if (runnable(isa)) out += (out.empty() ? "" : ",") + std::string(isa);
  }
  return out;
}

bool listed(const std::string& isa, const std::string& isas) {
  return ("," + isas + ",").find("," + isa + ",") != std::string::npos;
}

// `requested` (auto or a path) against the paths `isas` lists: this machine's, or any list a test passes.
std::string resolve_among(const std::string& requested, const std::string& isas) {
  if (requested == "auto") {
    std::string best = "scalar";
    for (const char* isa : kIsas) {
      if (listed(isa, isas)) best = isa;
    }
    return best;
  }
  TORCH_CHECK(requested == "scalar" || requested == "avx2" || requested == "avx512" ||
                  requested == "avx512bf16",
              "unknown N:M kernel ISA path '", requested,
              "': expected auto, scalar, avx2, avx512 or avx512bf16");
  TORCH_CHECK(listed(requested, isas), "the N:M kernel's ", requested,
              " path was forced but cannot run here (",
              built_with(requested) ? "this CPU lacks it" : "not in this build: architecture or compiler",
              "); paths this machine runs: ", isas);
  return requested;
}

std::string resolve(c10::string_view requested) {
  return resolve_among(std::string(requested.data(), requested.size()), available_isas());
}

// The block functions a call runs: the resolved path, except that avx512bf16 has its own only for
// bfloat16 operands (faster than the avx512 block at every batch from 1 to 32 and pattern measured,
// docs/cpu-kernel.md); float32 has no dot product to gain from.
std::string block_path(const std::string& requested, const std::string& isas, bool bf16) {
  const std::string path = resolve_among(requested, isas);
  return path == "avx512bf16" && !bf16 ? "avx512" : path;
}

BlockFn block_fn(const std::string& block, bool bf16) {
#ifdef LBC_NM_HAVE_X86
  if (block == "avx512bf16") return block_avx512bf16_bf16;
  if (block == "avx512") return bf16 ? block_avx512_bf16 : block_avx512_f32;
  if (block == "avx2") return bf16 ? block_avx2_bf16 : block_avx2_f32;
#endif
  return bf16 ? block_scalar_bf16 : block_scalar_f32;
}

int64_t expected_code_bytes(int64_t n, int64_t code_bits, bool bitmask) {
  return bitmask ? 2 * code_bits : n * 2 * code_bits;
}

void check_format(int64_t n, int64_t m, int64_t code_bits, bool bitmask) {
  TORCH_CHECK(2 <= m && m <= kLanes && 1 <= n && n < m, "unsupported N:M pattern ", n, ":", m,
              " (need 1 <= N < M <= ", kLanes, ")");
  if (bitmask) {
    TORCH_CHECK((code_bits == 4 || code_bits == 8 || code_bits == 16) && m <= code_bits,
                "bitmask codes need 4, 8 or 16 bits holding M=", m, ", got ", code_bits);
  } else {
    TORCH_CHECK(1 <= code_bits && code_bits <= 4 && (int64_t{1} << code_bits) >= m,
                "index codes need 1..4 bits holding positions below M=", m, ", got ", code_bits);
  }
}

at::Tensor nm_linear(const at::Tensor& x, const at::Tensor& values, const at::Tensor& codes,
                     const std::optional<at::Tensor>& bias, int64_t out_features, int64_t n, int64_t m,
                     int64_t code_bits, bool bitmask, c10::string_view isa) {
  check_format(n, m, code_bits, bitmask);
  TORCH_CHECK(x.device().is_cpu() && values.device().is_cpu() && codes.device().is_cpu(),
              "lbc_nm::nm_linear runs on the CPU");
  TORCH_CHECK(values.scalar_type() == at::kFloat || values.scalar_type() == at::kBFloat16,
              "N:M values must be float32 or bfloat16, got ", values.scalar_type());
  TORCH_CHECK(x.scalar_type() == values.scalar_type(), "input dtype ", x.scalar_type(),
              " differs from the weight's ", values.scalar_type());
  TORCH_CHECK(x.dim() >= 1, "input must have at least one dimension");
  TORCH_CHECK(values.dim() == 4 && values.size(2) == n && values.size(3) == kLanes,
              "N:M values must be [row_blocks, groups, ", n, ", ", kLanes, "], got ", values.sizes());
  const int64_t blocks = values.size(0);
  const int64_t groups = values.size(1);
  const int64_t code_bytes = expected_code_bytes(n, code_bits, bitmask);
  TORCH_CHECK(codes.scalar_type() == at::kByte && codes.dim() == 3 && codes.size(0) == blocks &&
                  codes.size(1) == groups && codes.size(2) == code_bytes,
              "N:M codes must be uint8 [", blocks, ", ", groups, ", ", code_bytes, "], got ",
              codes.scalar_type(), " ", codes.sizes());
  TORCH_CHECK(out_features > (blocks - 1) * kLanes && out_features <= blocks * kLanes,
              "out_features ", out_features, " does not fit ", blocks, " blocks of ", kLanes, " rows");
  const int64_t in = x.size(-1);
  TORCH_CHECK(in == groups * m, "input has ", in, " features; the weight expects ", groups * m);
  if (bias.has_value()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == out_features, "bias must be [", out_features,
                "], got ", bias->sizes());
  }
  const bool bf16 = values.scalar_type() == at::kBFloat16;

  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = out_features;
  at::Tensor y = at::empty(out_shape, x.options());
  int64_t batch = 1;
  for (int64_t d = 0; d + 1 < x.dim(); ++d) batch *= x.size(d);
  const std::string block = block_path(std::string(isa.data(), isa.size()), available_isas(), bf16);
  if (batch == 0 || out_features == 0) return y;
  if (in == 0) {
    // No reduction: y is the bias (or zero).
    return bias.has_value() ? y.copy_(bias->expand_as(y)) : y.zero_();
  }

  // x as fp32 rows padded with kLanes zeros: every group load of the vector paths (up to 16 floats from
  // its first input) stays inside the row, and any layout or dtype of x costs one small copy. The bf16
  // dot-product path reads x as bf16 (a copy of the same values) from windows of up to 2 * kLanes.
  const bool x_bf16 = block == "avx512bf16";
  const int64_t stride = in + (x_bf16 ? 2 * kLanes : kLanes);
  at::Tensor xs = at::zeros({batch, stride}, x.options().dtype(x_bf16 ? at::kBFloat16 : at::kFloat));
  xs.narrow(1, 0, in).copy_(x.reshape({batch, in}));
  std::vector<float> bias_f(out_features, 0.0f);
  if (bias.has_value()) {
    at::Tensor b = bias->to(at::kFloat).contiguous();
    std::copy(b.data_ptr<float>(), b.data_ptr<float>() + out_features, bias_f.begin());
  }
  at::Tensor vals = values.contiguous();
  at::Tensor code = codes.contiguous();
  const BlockFn fn = block_fn(block, bf16);
  const int64_t value_bytes = groups * n * kLanes * vals.element_size();
  const auto* value_base = static_cast<const uint8_t*>(vals.data_ptr());
  const uint8_t* code_base = code.data_ptr<uint8_t>();
  const float* x_base = x_bf16 ? nullptr : xs.data_ptr<float>();
  const auto* xh_base = x_bf16 ? reinterpret_cast<const uint16_t*>(xs.data_ptr<at::BFloat16>()) : nullptr;
  void* y_base = y.data_ptr();

  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
    std::vector<float> acc(batch * kLanes);
    for (int64_t block = first; block < last; ++block) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      BlockArgs args{x_base, batch, stride, value_base + block * value_bytes,
                     code_base + block * groups * code_bytes, groups, static_cast<int>(n),
                     static_cast<int>(m), static_cast<int>(code_bits), bitmask, code_bytes, acc.data(),
                     xh_base};
      fn(args);
      const int64_t row0 = block * kLanes;
      const int64_t rows = std::min<int64_t>(kLanes, out_features - row0);
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t r = 0; r < rows; ++r) {
          const float v = acc[b * kLanes + r] + bias_f[row0 + r];
          if (bf16) {
            static_cast<c10::BFloat16*>(y_base)[b * out_features + row0 + r] = c10::BFloat16(v);
          } else {
            static_cast<float*>(y_base)[b * out_features + row0 + r] = v;
          }
        }
      }
    }
  });
  return y;
}

std::string selected_isa(c10::string_view requested) { return resolve(requested); }

std::string block_path_op(c10::string_view requested, c10::string_view isas, bool bf16) {
  return block_path(std::string(requested.data(), requested.size()), std::string(isas.data(), isas.size()),
                    bf16);
}

}  // namespace

TORCH_LIBRARY(lbc_nm, lib) {
  lib.def(
      "nm_linear(Tensor x, Tensor values, Tensor codes, Tensor? bias, int out_features, int n, int m, "
      "int code_bits, bool bitmask, str isa) -> Tensor");
  lib.def("selected_isa(str isa) -> str", &selected_isa);
  lib.def("available_isas() -> str", &available_isas);
  // The dispatch decision alone, for any list of runnable paths (so it is testable on every CPU).
  lib.def("block_path(str isa, str isas, bool bf16) -> str", &block_path_op);
}

TORCH_LIBRARY_IMPL(lbc_nm, CPU, lib) { lib.impl("nm_linear", &nm_linear); }

}  // namespace lbc_nm
