// LBC's per-weight backward work in one pass over memory (CPU).
//
// The plain PyTorch path (lbc_core/sparsity/lbc.py) runs it as about eight elementwise kernels, each
// reading and writing whole weight-sized tensors: grad * mask, weight * grad, + weight_decay * score,
// the momentum update, the score update. Here every element is loaded once, updated in registers and
// stored once. The arithmetic is the plain path's, operation for operation, so results agree with it
// to the last bit or within fp32 rounding (where the compiler fuses a multiply-add differently).
//
// Ops (namespace lbc_sparsity), all updating their state in place; with a mask they also write dL/dweight
// = mask * g into masked_grad, without one (the layer's mask is all ones) dL/dweight is g itself:
//   sgd_step      s = w * g; SGD (momentum, dampening, Nesterov, L2 decay) on score
//   adam_step     the same with torch.optim.Adam's update (L2 decay added to the signal, as Adam does)
//   accumulate    pending += w * g   (scores step later, once per optimizer step)
// and one that returns a new tensor:
//   apply_mask    values * mask (the forward pass's masked weight, or a gradient's mask)
//
// A mask holds 0 and 1, either in the weight's dtype (the layer's mask buffer) or as bytes (uint8, its
// compact copy): a byte mask is a quarter of the memory traffic of a float32 one, and converting 0/1 to
// the weight's dtype before multiplying gives exactly the float mask's products (signed zeros included).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

namespace {

// Elements per parallel task: large enough that the thread pool's overhead is amortised, small enough
// that a 1M-weight layer still spreads over every core.
constexpr int64_t kGrain = 1 << 15;

// Compiled once per ISA; the dynamic loader picks the best clone for the CPU it runs on. x86-64-v3 is
// AVX2 + FMA, v4 adds AVX-512: the multiply-adds below are then single instructions.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define LBC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LBC_CLONES
#endif

// Scalars stay double until the kernel casts them to the tensor's type, as ATen does with alpha.
struct SgdArgs {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, first_step, has_buffer;
};

// Masked=false: the layer's mask is all ones, so the weight's gradient is the incoming one as it is and
// neither the mask nor a new gradient tensor is touched. M: the mask's element type (T or uint8_t).
template <typename T, typename M, bool Masked>
LBC_CLONES void sgd_range(const T* __restrict w, const M* __restrict mask, const T* __restrict g,
                          T* __restrict score, T* __restrict buf, T* __restrict grad_w, int64_t begin,
                          int64_t end, SgdArgs a) {
  const T lr = T(a.lr), mom = T(a.momentum), keep = T(1 - a.dampening), wd = T(a.weight_decay);
  for (int64_t i = begin; i < end; ++i) {
    const T gi = g[i];
    if constexpr (Masked) grad_w[i] = gi * T(mask[i]);
    T d = w[i] * gi;  // the signal, rounded on its own as the plain path's weight * grad
    // Each std::fma stands where ATen's add(self, other, alpha) computes fmadd(other, alpha, self).
    if (a.weight_decay != 0) d = std::fma(score[i], wd, d);
    if (a.has_buffer) {
      const T b = a.first_step ? d : std::fma(d, keep, buf[i] * mom);
      buf[i] = b;
      d = a.nesterov ? std::fma(b, mom, d) : b;
    }
    score[i] = std::fma(d, -lr, score[i]);
  }
}

struct AdamArgs {
  double lr_over_bc1, beta1, beta2, bc2, eps, weight_decay;
};

template <typename T, typename M, bool Masked>
LBC_CLONES void adam_range(const T* __restrict w, const M* __restrict mask, const T* __restrict g,
                           T* __restrict score, T* __restrict m1, T* __restrict m2, T* __restrict grad_w,
                           int64_t begin, int64_t end, AdamArgs a) {
  const T one_m_b1 = T(1 - a.beta1), b2 = T(a.beta2), one_m_b2 = T(1 - a.beta2);
  const T wd = T(a.weight_decay), bc2 = T(a.bc2), eps = T(a.eps), neg_step = T(-a.lr_over_bc1);
  for (int64_t i = begin; i < end; ++i) {
    const T gi = g[i];
    if constexpr (Masked) grad_w[i] = gi * T(mask[i]);
    T d = w[i] * gi;  // the signal, rounded on its own as the plain path's weight * grad
    if (a.weight_decay != 0) d = std::fma(score[i], wd, d);
    const T e1 = std::fma(one_m_b1, d - m1[i], m1[i]);  // ATen's lerp for a weight below 0.5
    const T e2 = std::fma(one_m_b2 * d, d, m2[i] * b2);
    m1[i] = e1;
    m2[i] = e2;
    score[i] = score[i] + neg_step * e1 / (std::sqrt(e2 / bc2) + eps);  // ATen's addcdiv order
  }
}

template <typename T, typename M, bool Masked>
LBC_CLONES void accumulate_range(const T* __restrict w, const M* __restrict mask, const T* __restrict g,
                                 T* __restrict pending, T* __restrict grad_w, int64_t begin, int64_t end,
                                 bool first) {
  for (int64_t i = begin; i < end; ++i) {
    const T gi = g[i];
    if constexpr (Masked) grad_w[i] = gi * T(mask[i]);
    const T signal = w[i] * gi;  // rounded on its own, as the plain path's weight * grad
    pending[i] = first ? signal : pending[i] + signal;
  }
}

template <typename T, typename M>
LBC_CLONES void apply_mask_range(const T* __restrict values, const M* __restrict mask, T* __restrict out,
                                 int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) out[i] = values[i] * T(mask[i]);
}

void check_state(const at::Tensor& weight, const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "lbc_sparsity: ", name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == weight.scalar_type(), "lbc_sparsity: ", name, " has dtype ",
              t.scalar_type(), ", the weight ", weight.scalar_type());
  TORCH_CHECK(t.sizes() == weight.sizes(), "lbc_sparsity: ", name, " has shape ", t.sizes(),
              ", the weight ", weight.sizes());
  TORCH_CHECK(t.is_contiguous(), "lbc_sparsity: ", name, " must be contiguous (it is updated in place)");
}

void check_mask(const at::Tensor& weight, const at::Tensor& mask) {
  TORCH_CHECK(mask.device().is_cpu(), "lbc_sparsity: mask must be a CPU tensor");
  TORCH_CHECK(mask.scalar_type() == weight.scalar_type() || mask.scalar_type() == at::kByte,
              "lbc_sparsity: mask has dtype ", mask.scalar_type(), "; it must be the weight's (",
              weight.scalar_type(), ") or uint8");
  TORCH_CHECK(mask.sizes() == weight.sizes(), "lbc_sparsity: mask has shape ", mask.sizes(), ", the weight ",
              weight.sizes());
  TORCH_CHECK(mask.is_contiguous(), "lbc_sparsity: mask must be contiguous");
}

void check_floating_cpu(const at::Tensor& weight) {
  TORCH_CHECK(weight.device().is_cpu(), "lbc_sparsity: the fused LBC step runs on CPU tensors only");
  TORCH_CHECK(weight.scalar_type() == at::kFloat || weight.scalar_type() == at::kDouble,
              "lbc_sparsity: the fused LBC step supports float32 and float64 weights, got ",
              weight.scalar_type());
}

// The weight gradient goes to ``masked_grad`` (mask * grad) when the layer has a mask; without one (an
// all-ones mask) the caller uses ``grad`` itself and both are absent.
struct Masking {
  const at::Tensor* mask = nullptr;
  at::Tensor* out = nullptr;
};

Masking check_inputs(const at::Tensor& weight, const at::Tensor& grad, const c10::optional<at::Tensor>& mask,
                     c10::optional<at::Tensor>& masked_grad) {
  check_floating_cpu(weight);
  TORCH_CHECK(grad.sizes() == weight.sizes() && grad.scalar_type() == weight.scalar_type(),
              "lbc_sparsity: the gradient must match the weight's shape and dtype");
  const bool has_mask = mask.has_value() && mask->defined();
  const bool has_out = masked_grad.has_value() && masked_grad->defined();
  TORCH_CHECK(has_mask == has_out, "lbc_sparsity: mask and masked_grad are given together or not at all");
  Masking masking;
  if (has_mask) {
    check_mask(weight, *mask);
    check_state(weight, *masked_grad, "masked_grad");
    masking.mask = &*mask;
    masking.out = &*masked_grad;
  }
  return masking;
}

// Names a mask's element type for the kernels' template parameter M.
template <typename M>
struct MaskOf {
  using type = M;
};

// Runs body(masked, MaskOf<M>, begin, end) over ranges of the weight's elements on ATen's thread pool, with
// masked a std::true_type or std::false_type and M the mask's element type: T, uint8_t, or T (unread)
// without a mask.
template <typename T, typename F>
void for_each_range(const at::Tensor& w, const at::Tensor* mask, F&& body) {
  const bool bytes = mask != nullptr && mask->scalar_type() == at::kByte;
  at::parallel_for(0, w.numel(), kGrain, [&](int64_t begin, int64_t end) {
    if (mask == nullptr) {
      body(std::false_type{}, MaskOf<T>{}, begin, end);
    } else if (bytes) {
      body(std::true_type{}, MaskOf<uint8_t>{}, begin, end);
    } else {
      body(std::true_type{}, MaskOf<T>{}, begin, end);
    }
  });
}

template <typename M>
const M* data_or_null(const Masking& masking) {
  return masking.mask != nullptr ? masking.mask->data_ptr<M>() : nullptr;
}

template <typename T>
T* out_or_null(const Masking& masking) {
  return masking.out != nullptr ? masking.out->data_ptr<T>() : nullptr;
}

void sgd_step(const at::Tensor& weight, const at::Tensor& grad, at::Tensor& score,
              c10::optional<at::Tensor> momentum_buffer, c10::optional<at::Tensor> mask,
              c10::optional<at::Tensor> masked_grad, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool first_step) {
  const Masking masking = check_inputs(weight, grad, mask, masked_grad);
  check_state(weight, score, "score");
  const bool has_buffer = momentum_buffer.has_value() && momentum_buffer->defined();
  TORCH_CHECK(has_buffer == (momentum > 0), "lbc_sparsity: a momentum buffer is needed iff momentum > 0");
  if (has_buffer) check_state(weight, *momentum_buffer, "momentum buffer");
  const at::Tensor w = weight.contiguous(), g = grad.contiguous();
  const SgdArgs args{lr, momentum, dampening, weight_decay, nesterov, first_step, has_buffer};
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "lbc_sgd_step", [&] {
    scalar_t* buf = has_buffer ? momentum_buffer->data_ptr<scalar_t>() : nullptr;
    for_each_range<scalar_t>(w, masking.mask, [&](auto masked, auto mask_of, int64_t begin, int64_t end) {
      using M = typename decltype(mask_of)::type;
      sgd_range<scalar_t, M, decltype(masked)::value>(
          w.data_ptr<scalar_t>(), data_or_null<M>(masking), g.data_ptr<scalar_t>(),
          score.data_ptr<scalar_t>(), buf, out_or_null<scalar_t>(masking), begin, end, args);
    });
  });
}

void adam_step(const at::Tensor& weight, const at::Tensor& grad, at::Tensor& score, at::Tensor& exp_avg,
               at::Tensor& exp_avg_sq, c10::optional<at::Tensor> mask, c10::optional<at::Tensor> masked_grad,
               double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step) {
  const Masking masking = check_inputs(weight, grad, mask, masked_grad);
  check_state(weight, score, "score");
  check_state(weight, exp_avg, "exp_avg");
  check_state(weight, exp_avg_sq, "exp_avg_sq");
  TORCH_CHECK(step >= 1, "lbc_sparsity: the Adam step count starts at 1");
  const at::Tensor w = weight.contiguous(), g = grad.contiguous();
  const double bc1 = 1 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1 - std::pow(beta2, static_cast<double>(step));
  const AdamArgs args{lr / bc1, beta1, beta2, bc2, eps, weight_decay};
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "lbc_adam_step", [&] {
    for_each_range<scalar_t>(w, masking.mask, [&](auto masked, auto mask_of, int64_t begin, int64_t end) {
      using M = typename decltype(mask_of)::type;
      adam_range<scalar_t, M, decltype(masked)::value>(
          w.data_ptr<scalar_t>(), data_or_null<M>(masking), g.data_ptr<scalar_t>(),
          score.data_ptr<scalar_t>(), exp_avg.data_ptr<scalar_t>(), exp_avg_sq.data_ptr<scalar_t>(),
          out_or_null<scalar_t>(masking), begin, end, args);
    });
  });
}

void accumulate(const at::Tensor& weight, const at::Tensor& grad, at::Tensor& pending,
                c10::optional<at::Tensor> mask, c10::optional<at::Tensor> masked_grad, bool first) {
  const Masking masking = check_inputs(weight, grad, mask, masked_grad);
  check_state(weight, pending, "pending signal");
  const at::Tensor w = weight.contiguous(), g = grad.contiguous();
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "lbc_accumulate", [&] {
    for_each_range<scalar_t>(w, masking.mask, [&](auto masked, auto mask_of, int64_t begin, int64_t end) {
      using M = typename decltype(mask_of)::type;
      accumulate_range<scalar_t, M, decltype(masked)::value>(
          w.data_ptr<scalar_t>(), data_or_null<M>(masking), g.data_ptr<scalar_t>(),
          pending.data_ptr<scalar_t>(), out_or_null<scalar_t>(masking), begin, end, first);
    });
  });
}

at::Tensor apply_mask(const at::Tensor& values, const at::Tensor& mask) {
  check_floating_cpu(values);
  check_mask(values, mask);
  const at::Tensor v = values.contiguous();
  at::Tensor out = at::empty_like(v, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "lbc_apply_mask", [&] {
    for_each_range<scalar_t>(v, &mask, [&](auto, auto mask_of, int64_t begin, int64_t end) {
      using M = typename decltype(mask_of)::type;
      apply_mask_range<scalar_t, M>(v.data_ptr<scalar_t>(), mask.data_ptr<M>(), out.data_ptr<scalar_t>(),
                                    begin, end);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(lbc_sparsity, m) {
  m.def(
      "sgd_step(Tensor weight, Tensor grad, Tensor(a!) score, Tensor(b!)? momentum_buffer, Tensor? mask, "
      "Tensor(c!)? masked_grad, float lr, float momentum, float dampening, float weight_decay, "
      "bool nesterov, bool first_step) -> ()");
  m.def(
      "adam_step(Tensor weight, Tensor grad, Tensor(a!) score, Tensor(b!) exp_avg, Tensor(c!) exp_avg_sq, "
      "Tensor? mask, Tensor(d!)? masked_grad, float lr, float beta1, float beta2, float eps, "
      "float weight_decay, int step) -> ()");
  m.def(
      "accumulate(Tensor weight, Tensor grad, Tensor(a!) pending, Tensor? mask, Tensor(b!)? masked_grad, "
      "bool first) -> ()");
  m.def("apply_mask(Tensor values, Tensor mask) -> Tensor");
}

TORCH_LIBRARY_IMPL(lbc_sparsity, CPU, m) {
  m.impl("sgd_step", &sgd_step);
  m.impl("adam_step", &adam_step);
  m.impl("accumulate", &accumulate);
  m.impl("apply_mask", &apply_mask);
}
