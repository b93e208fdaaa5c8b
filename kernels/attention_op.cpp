// fewstep attention: the op's schema, its C++ entry points (through the
// dispatcher), and the single place that checks tensors and fills
// AttentionParams. Backends register in attention_cpu.cpp / attention_cuda.cpp.
#include <torch/library.h>

#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdint>
#include <sstream>
#include <string>

#include "kernels/attention.h"
#include "kernels/attention_checks.h"

TORCH_LIBRARY(fewstep, m) {
  m.def("attention(Tensor q, Tensor k, Tensor v, float scale) -> Tensor");
  m.def("attention.out(Tensor q, Tensor k, Tensor v, float scale, *, Tensor(a!) out) -> Tensor(a!)");
}

namespace fewstep {
namespace {

[[noreturn]] void fail(const std::string& constraint) { throw AttentionError("fewstep::attention: " + constraint); }

std::string shape_of(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

std::string dtype_name(at::ScalarType t) { return c10::toString(t); }

std::string device_name(const at::Tensor& t) { return t.device().str(); }

void check_defined(const at::Tensor& t, const char* name) {
  if (!t.defined()) fail(std::string(name) + " is an undefined tensor");
}

bool is_supported_dtype(at::ScalarType t, detail::AttentionBackend backend) {
  if (backend == detail::AttentionBackend::cpu) return t == at::kFloat;
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

/// fp16/bf16 CUDA kernels move rows in 16-byte vectors: every row start of
/// `t` must be 16-byte aligned (pointer and strides of non-singleton dims).
bool rows_are_16b_aligned(const at::Tensor& t) {
  if (reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 != 0) return false;
  const int64_t elems_per_16b = 16 / static_cast<int64_t>(t.element_size());
  for (int64_t i = 0; i + 1 < t.dim(); ++i) {
    if (t.size(i) > 1 && t.stride(i) % elems_per_16b != 0) return false;
  }
  return true;
}

bool needs_16b_rows(const at::Tensor& q, detail::AttentionBackend backend) {
  return backend == detail::AttentionBackend::cuda && q.scalar_type() != at::kFloat;
}

/// `t` itself when its layout suits the kernel, else a contiguous copy.
at::Tensor kernel_layout(const at::Tensor& t, detail::AttentionBackend backend) {
  if (!needs_16b_rows(t, backend) || rows_are_16b_aligned(t)) return t;
  return at::empty(t.sizes(), t.options()).copy_(t);
}

AttentionParams make_params(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
                            double scale) {
  AttentionParams p;
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.out = out.data_ptr();
  const bool four_d = q.dim() == 4;
  p.batch = q.size(0);
  p.heads = four_d ? q.size(1) : 1;
  p.seq_q = q.size(-2);
  p.seq_k = k.size(-2);
  p.head_dim = q.size(-1);
  auto strides = [four_d](const at::Tensor& t, int64_t& batch, int64_t& head, int64_t& row) {
    batch = t.stride(0);
    head = four_d ? t.stride(1) : 0;
    row = t.stride(-2);
  };
  strides(q, p.q_batch_stride, p.q_head_stride, p.q_row_stride);
  strides(k, p.k_batch_stride, p.k_head_stride, p.k_row_stride);
  strides(v, p.v_batch_stride, p.v_head_stride, p.v_row_stride);
  strides(out, p.out_batch_stride, p.out_head_stride, p.out_row_stride);
  p.scale = static_cast<float>(scale);
  switch (q.scalar_type()) {
    case at::kHalf:
      p.dtype = AttentionDtype::f16;
      break;
    case at::kBFloat16:
      p.dtype = AttentionDtype::bf16;
      break;
    default:
      p.dtype = AttentionDtype::f32;
      break;
  }
  return p;
}

void check_out(const at::Tensor& q, const at::Tensor& out) {
  check_defined(out, "out");
  if (out.sizes() != q.sizes()) fail("out has shape " + shape_of(out) + " but q has " + shape_of(q));
  if (out.scalar_type() != q.scalar_type()) {
    fail("out has dtype " + dtype_name(out.scalar_type()) + " but q has " + dtype_name(q.scalar_type()));
  }
  if (out.device() != q.device()) fail("out is on " + device_name(out) + " but q is on " + device_name(q));
}

}  // namespace

namespace detail {

void check_attention_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, AttentionBackend backend) {
  check_defined(q, "q");
  check_defined(k, "k");
  check_defined(v, "v");
  // Shapes.
  if (q.dim() != 3 && q.dim() != 4) {
    fail("q must be 3-D [B*H, seq_q, d] or 4-D [B, H, seq_q, d], got shape " + shape_of(q));
  }
  const int64_t rank = q.dim();
  for (const auto& [t, name] : {std::pair{&k, "k"}, std::pair{&v, "v"}}) {
    if (t->dim() != rank) {
      fail(std::string(name) + " must have q's rank " + std::to_string(rank) + ", got shape " + shape_of(*t));
    }
    for (int64_t i = 0; i < rank - 2; ++i) {
      if (t->size(i) != q.size(i)) {
        fail(std::string(name) + " has shape " + shape_of(*t) + " but q has " + shape_of(q) +
             "; their leading (batch, head) dims must match");
      }
    }
    if (t->size(-1) != q.size(-1)) {
      fail("head dim of " + std::string(name) + " is " + std::to_string(t->size(-1)) + " but q's is " +
           std::to_string(q.size(-1)));
    }
  }
  if (v.size(-2) != k.size(-2)) {
    fail("v has seq_k " + std::to_string(v.size(-2)) + " but k has " + std::to_string(k.size(-2)));
  }
  const int64_t head_dim = q.size(-1);
  if (head_dim <= 0) fail("head dim " + std::to_string(head_dim) + " is not positive");
  if (head_dim > kMaxHeadDim) {
    fail("head dim " + std::to_string(head_dim) + " exceeds the maximum " + std::to_string(kMaxHeadDim));
  }
  if (k.size(-2) < 1) fail("seq_k is 0; k and v need at least one key");
  // Dtypes.
  for (const auto& [t, name] : {std::pair{&k, "k"}, std::pair{&v, "v"}}) {
    if (t->scalar_type() != q.scalar_type()) {
      fail(std::string(name) + " has dtype " + dtype_name(t->scalar_type()) + " but q has " +
           dtype_name(q.scalar_type()) + "; q, k and v must share one dtype");
    }
  }
  if (!is_supported_dtype(q.scalar_type(), backend)) {
    fail(backend == AttentionBackend::cpu
             ? "dtype " + dtype_name(q.scalar_type()) + " is not supported on CPU (float32, bfloat16)"
             : "dtype " + dtype_name(q.scalar_type()) + " is not supported on CUDA (float16, bfloat16, float32)");
  }
  // Devices.
  for (const auto& [t, name] : {std::pair{&k, "k"}, std::pair{&v, "v"}}) {
    if (t->device() != q.device()) {
      fail(std::string(name) + " is on " + device_name(*t) + " but q is on " + device_name(q) +
           "; q, k and v must be on one device");
    }
  }
  const at::DeviceType expected = backend == AttentionBackend::cpu ? at::kCPU : at::kCUDA;
  if (q.device().type() != expected) {
    fail("q is on " + device_name(q) + " but this kernel is the " + (expected == at::kCPU ? "CPU" : "CUDA") + " one");
  }
  // Strides.
  for (const auto& [t, name] : {std::pair{&q, "q"}, std::pair{&k, "k"}, std::pair{&v, "v"}}) {
    if (t->stride(-1) != 1) {
      fail(std::string(name) + "'s last dim is not contiguous (stride " + std::to_string(t->stride(-1)) +
           "); the head dim must have stride 1");
    }
  }
}

at::Tensor& attention_out_impl(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                               at::Tensor& out, AttentionBackend backend, const AttentionLauncher& launch) {
  check_attention_inputs(q, k, v, backend);
  check_out(q, out);
  if (q.numel() == 0) return out;
  const int64_t head_dim = q.size(-1);
  if (head_dim % kHeadDimMultiple != 0) {
    // The kernels take head dims in multiples of 8. Zero columns change no
    // score (q·k sums over d) and give zero output columns, so the padded
    // problem's first head_dim output columns are the answer; `scale` is
    // explicit and unaffected. Costs one copy of q, k, v and out.
    const int64_t pad = kHeadDimMultiple - head_dim % kHeadDimMultiple;
    const at::Tensor qp = at::constant_pad_nd(q, {0, pad});
    at::Tensor target = at::empty(qp.sizes(), qp.options());
    attention_out_impl(qp, at::constant_pad_nd(k, {0, pad}), at::constant_pad_nd(v, {0, pad}), scale, target, backend,
                       launch);
    out.copy_(target.narrow(-1, 0, head_dim));
    return out;
  }
  const at::Tensor qx = kernel_layout(q, backend);
  const at::Tensor kx = kernel_layout(k, backend);
  const at::Tensor vx = kernel_layout(v, backend);
  const bool out_direct = out.stride(-1) == 1 && !out.is_alias_of(q) && !out.is_alias_of(k) && !out.is_alias_of(v) &&
                          (!needs_16b_rows(q, backend) || rows_are_16b_aligned(out));
  at::Tensor target = out_direct ? out : at::empty(q.sizes(), q.options());
  launch(make_params(qx, kx, vx, target, scale));
  if (!out_direct) out.copy_(target);
  return out;
}

at::Tensor attention_impl(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                          AttentionBackend backend, const AttentionLauncher& launch) {
  check_attention_inputs(q, k, v, backend);
  at::Tensor out = at::empty(q.sizes(), q.options());
  return attention_out_impl(q, k, v, scale, out, backend, launch);
}

}  // namespace detail

namespace {

/// Only CPU and CUDA have kernels; anything else would reach the dispatcher's
/// multi-line "no kernel" error, so it is refused here in one line.
void check_dispatchable(const at::Tensor& q) {
  check_defined(q, "q");
  if (q.device().type() != at::kCPU && q.device().type() != at::kCUDA) {
    fail("q is on " + device_name(q) + "; only CPU and CUDA tensors are supported");
  }
}

}  // namespace

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale) {
  check_dispatchable(q);
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fewstep::attention", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>();
  return op.call(q, k, v, scale);
}

at::Tensor& attention_out(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                          at::Tensor& out) {
  check_dispatchable(q);
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("fewstep::attention", "out")
          .typed<at::Tensor&(const at::Tensor&, const at::Tensor&, const at::Tensor&, double, at::Tensor&)>();
  return op.call(q, k, v, scale, out);
}

AttentionMode parse_attention_mode(std::string_view text) {
  if (text == "native") return AttentionMode::native;
  if (text == "fused") return AttentionMode::fused;
  throw AttentionError("--attention: expected native or fused, got '" + std::string(text) + "'");
}

std::string to_string(AttentionMode mode) { return mode == AttentionMode::native ? "native" : "fused"; }

}  // namespace fewstep
