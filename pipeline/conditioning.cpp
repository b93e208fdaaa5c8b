// Guidance embedding and SDXL time ids (see conditioning.h).
#include "pipeline/conditioning.h"

#include <stdexcept>
#include <string>

namespace fewstep {

at::Tensor guidance_scale_embedding(const at::Tensor& w, int64_t dim) {
  if (dim < 4)
    throw std::invalid_argument("guidance embedding: dim (unet.time_cond_proj_dim) must be at least 4, got " +
                                std::to_string(dim));
  if (w.dim() != 1) throw std::invalid_argument("guidance embedding: w must be 1-D [B]");
  const int64_t half = dim / 2;
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(w.device());
  // float32 throughout, as diffusers: log(10000) is a float32 tensor divided by half - 1.
  const at::Tensor step = at::log(at::scalar_tensor(10000.0, f32)) / static_cast<double>(half - 1);
  const at::Tensor freqs = at::exp(at::arange(half, f32) * -step);                        // [half]
  const at::Tensor args = (w.to(at::kFloat) * 1000.0).unsqueeze(1) * freqs.unsqueeze(0);  // [B, half]
  at::Tensor emb = at::cat({at::sin(args), at::cos(args)}, 1);                            // [B, 2·half]
  if (dim % 2 == 1) emb = at::constant_pad_nd(emb, {0, 1});
  return emb;
}

at::Tensor sdxl_time_ids(int64_t width, int64_t height) {
  const auto h = static_cast<float>(height), w = static_cast<float>(width);
  return at::tensor({h, w, 0.0f, 0.0f, h, w}, at::kFloat).view({1, 6});
}

}  // namespace fewstep
