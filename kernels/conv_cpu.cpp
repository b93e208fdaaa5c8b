// fewstep::conv2d: aten::conv2d with its weights reordered once instead of
// every call.
//
// LibTorch's oneDNN convolution reorders a float32 weight into the blocked
// layout its kernel wants on every call (for a 3×3, 144→144 convolution
// about a sixth of the call at 8×8 pixels). For channels-last float32
// activations and a channels-last weight this op keeps the reordered weight
// (LibTorch's own mkldnn_prepacked::conv2d_prepack context, which also
// holds the primitive's settings) in a cache keyed by the weight tensor and
// its version counter, so a weight changed in place or freed is never
// served stale. Everything else (1×1 kernels, where LibTorch's GEMM path is
// faster; other layouts, dtypes, devices; autograd) runs aten::conv2d.
// Not a torch-free kernel: the arithmetic is oneDNN's, as in LibTorch.
#include <torch/library.h>

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <ATen/record_function.h>
#include <c10/util/intrusive_ptr.h>

#include <map>
#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

#include "kernels/fused.h"

namespace fewstep {
namespace {

/// At most this many cached contexts (one per weight and input size); the
/// cache is emptied when it would grow past it.
constexpr size_t kMaxCachedContexts = 512;

using Key = std::tuple<const c10::TensorImpl*, const c10::TensorImpl*, std::vector<int64_t>>;

/// A weak reference to a tensor and its version when cached.
struct Seen {
  explicit Seen(const at::Tensor& t) : impl(t.getIntrusivePtr()), version(t._version()) {}
  /// Whether `t` is still that tensor (alive, the same object) and unchanged.
  bool matches(const at::Tensor& t) const {
    return impl.lock().get() == t.unsafeGetTensorImpl() && t._version() == version;
  }
  c10::weak_intrusive_ptr<c10::TensorImpl> impl;
  uint32_t version;
};

struct Entry {
  Seen weight;
  std::optional<Seen> bias;
  c10::IValue context;
};

struct Cache {
  std::mutex mutex;
  std::map<Key, Entry> entries;
};

Cache& cache() {
  static Cache c;
  return c;
}

const c10::OperatorHandle* prepacked_op(const char* name) {
  const std::optional<c10::OperatorHandle> op = c10::Dispatcher::singleton().findSchema({name, ""});
  return op ? new c10::OperatorHandle(*op) : nullptr;
}

at::Tensor conv2d_any(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return at::conv2d(x, weight, bias, stride, padding, dilation, groups);
}

at::Tensor conv2d_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias_opt,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  static const c10::OperatorHandle* prepack = prepacked_op("mkldnn_prepacked::conv2d_prepack");
  static const c10::OperatorHandle* run = prepacked_op("mkldnn_prepacked::conv2d_run");
  const at::Tensor bias = bias_opt.has_value() ? *bias_opt : at::Tensor();
  const bool applies = prepack != nullptr && run != nullptr && x.dim() == 4 && weight.dim() == 4 &&
                       x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat &&
                       (!bias.defined() || bias.scalar_type() == at::kFloat) && groups == 1 &&
                       weight.size(2) * weight.size(3) > 1 && x.size(1) == weight.size(1) &&
                       x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous() &&
                       weight.is_contiguous(at::MemoryFormat::ChannelsLast) && !weight.is_contiguous() &&
                       !(at::GradMode::is_enabled() &&
                         (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad())));
  if (!applies) return conv2d_any(x, weight, bias_opt, stride, padding, dilation, groups);

  std::vector<int64_t> key_values = x.sizes().vec();
  for (at::IntArrayRef list : {stride, padding, dilation})
    key_values.insert(key_values.end(), list.begin(), list.end());
  const Key key{weight.unsafeGetTensorImpl(), bias.defined() ? bias.unsafeGetTensorImpl() : nullptr, key_values};
  c10::IValue context;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    auto found = c.entries.find(key);
    if (found != c.entries.end() && found->second.weight.matches(weight) &&
        (!bias.defined() || (found->second.bias && found->second.bias->matches(bias)))) {
      context = found->second.context;
    } else {
      torch::jit::Stack stack{weight,         bias_opt, stride.vec(),    padding.vec(),
                              dilation.vec(), groups,   x.sizes().vec(), std::string("none")};
      prepack->callBoxed(&stack);
      if (c.entries.size() >= kMaxCachedContexts) c.entries.clear();
      Entry entry{Seen(weight), bias.defined() ? std::optional<Seen>(Seen(bias)) : std::nullopt, stack.at(0)};
      context = entry.context;
      c.entries.insert_or_assign(key, std::move(entry));
    }
  }
  // aten::convolution's argument list, so that `fewstep profile` counts its FLOPs.
  RECORD_FUNCTION("fewstep::conv2d_prepacked",
                  std::vector<c10::IValue>({x, weight, bias, stride.vec(), padding.vec(), dilation.vec(), false,
                                            std::vector<int64_t>{0, 0}, groups}));
  torch::jit::Stack stack{x, context};
  run->callBoxed(&stack);
  return stack.at(0).toTensor();
}

}  // namespace

at::Tensor conv2d(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fewstep::conv2d", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                               at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t)>();
  return op.call(x, weight, bias, stride, padding, dilation, groups);
}

}  // namespace fewstep

TORCH_LIBRARY_FRAGMENT(fewstep, m) {
  m.def(
      "conv2d(Tensor x, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, int[2] dilation, int groups) -> "
      "Tensor");
}

TORCH_LIBRARY_IMPL(fewstep, CPU, m) { m.impl("conv2d", &fewstep::conv2d_cpu); }

TORCH_LIBRARY_IMPL(fewstep, CompositeExplicitAutograd, m) { m.impl("conv2d", &fewstep::conv2d_any); }
