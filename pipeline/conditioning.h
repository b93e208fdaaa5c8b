// Conditioning inputs that the pipeline computes for the UNet besides the
// text context: LCM's guidance embedding (timestep_cond) and SDXL's size
// conditioning (time_ids). See unet/model.h, ExtraConditioning.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace fewstep {

/// LCM's guidance-scale embedding (Luo et al. 2023, Sec. 4.2), computed as
/// diffusers' get_guidance_scale_embedding(w, dim) does, in float32 and in
/// its order of operations: w' = w·1000; half = dim / 2;
/// f_k = exp(-k · log(10000)/(half - 1)), k = 0 .. half-1; e = w'·f;
/// result = cat(sin(e), cos(e)), zero-padded by one column when dim is odd.
/// The pipeline passes w = cfg_scale - 1, as diffusers' LCM pipeline does.
/// w: [B] (any floating dtype, any device). Returns [B, dim] float32 on w's
/// device. Throws std::invalid_argument when dim < 4 (one frequency would
/// divide by half - 1 = 0) or w is not 1-D.
at::Tensor guidance_scale_embedding(const at::Tensor& w, int64_t dim);

/// SDXL's micro-conditioning ids (Podell et al. 2023, Sec. 2.2, as diffusers'
/// _get_add_time_ids): (original_h, original_w, crop_top, crop_left,
/// target_h, target_w) in pixels, with the original and target size both the
/// requested size and crop (0, 0). Returns [1, 6] float32 on the CPU.
at::Tensor sdxl_time_ids(int64_t width, int64_t height);

}  // namespace fewstep
