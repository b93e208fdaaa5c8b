// The text-to-image pipeline (see pipeline.h).
#include "pipeline/pipeline.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <cmath>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "pipeline/conditioning.h"
#include "pipeline/model_source.h"
#include "pipeline/tensor_io.h"
#include "samplers/denoiser.h"
#include "samplers/registry.h"
#include "samplers/schedule.h"

namespace fewstep {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

/// Rough activation-memory estimate for one UNet call (documented in the
/// README): 6 KiB per model-space pixel per batch row.
constexpr double kBytesPerPixelRow = 6.0 * 1024.0;

double available_memory_bytes() {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? double(pages) * double(page) : 8.0 * (1ull << 30);
}

}  // namespace

bool draws_step_noise(const GenerateRequest& req) {
  const SamplerInfo& info = find_sampler(req.sampler);
  return draws_step_noise(info, resolve_sampler_options(info, req.sampler_options));
}

at::ScalarType parse_dtype(const std::string& n) {
  if (n == "fp32" || n == "float32" || n == "float") return at::kFloat;
  if (n == "fp16" || n == "float16" || n == "half") return at::kHalf;
  if (n == "bf16" || n == "bfloat16") return at::kBFloat16;
  if (n == "fp64" || n == "float64" || n == "double") return at::kDouble;
  throw std::invalid_argument("--dtype: unknown dtype '" + n + "' (valid: fp32, fp16, bf16, fp64)");
}

std::unique_ptr<Pipeline> Pipeline::load(const std::string& model, const RuntimeOptions& rt) {
  const auto t0 = Clock::now();
  std::unique_ptr<Pipeline> p(new Pipeline());
  at::set_num_threads(rt.threads > 0 ? rt.threads
                                     : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  // The profiling graph executor spends its first calls profiling and
  // re-optimising; a CLI run makes only a handful of calls, so run the
  // graphs as loaded.
  torch::jit::setGraphExecutorOptimize(false);

  try {
    p->device_ = at::Device(rt.device);
  } catch (const std::exception&) {
    throw std::invalid_argument("--device: unknown device '" + rt.device + "' (valid: cpu, cuda, cuda:N)");
  }
  if (p->device_.is_cuda() && !at::hasCUDA())
    throw std::invalid_argument("--device: '" + rt.device + "' requested but no CUDA GPU is available");
  if (!p->device_.is_cpu() && !p->device_.is_cuda())
    throw std::invalid_argument("--device: only cpu and cuda are supported");
  p->model_dtype_ = parse_dtype(rt.dtype);
  if (rt.attention != "fused" && rt.attention != "native")
    throw std::invalid_argument("--attention: '" + rt.attention + "' is not one of fused, native");
  FusionMode fusion = FusionMode::all;
  try {
    fusion = parse_fusion_mode(rt.fusion);
  } catch (const FusedOpError& e) {
    throw std::invalid_argument(e.what());
  }

  LoadedModel loaded = load_model_source(model, rt.attention == "fused", fusion);
  if (const std::string& name = loaded.manifest.defaults.sampler; !name.empty()) {
    try {
      find_sampler(name);
    } catch (const SamplerError& e) {
      throw ModelError((std::filesystem::path(model) / "model.json").string() +
                       ": field 'defaults.sampler': " + e.what());
    }
  }
  p->manifest_ = std::move(loaded.manifest);
  p->model_ = std::move(loaded.model);
  p->text_encoder_ = std::move(loaded.text_encoder);
  p->text_encoder_2_ = std::move(loaded.text_encoder_2);
  p->vae_ = std::move(loaded.vae);
  p->tokenizer_ = std::move(loaded.tokenizer);
  p->tokenizer_2_ = std::move(loaded.tokenizer_2);
  for (const std::string& w : p->manifest_.warnings) stderr_warning_sink(w);

  const bool analytic = loaded.analytic;
  p->analytic_ = analytic;
  if (p->model_dtype_ == at::kDouble && !analytic)
    throw std::invalid_argument("--dtype: fp64 is only for analytic models (use fp32, fp16 or bf16)");
  if (p->model_dtype_ == at::kHalf && !p->device_.is_cuda())
    throw std::invalid_argument("--dtype: fp16 needs --device cuda (CPU runs fp32 or bf16)");
  p->sampler_dtype_ = p->model_dtype_ == at::kDouble ? at::kDouble : at::kFloat;
  // bf16 on the CPU is for the UNet, the cost of every step; the text
  // encoder (once per prompt) and the VAE decoder (once per image) stay fp32.
  p->aux_dtype_ = p->model_dtype_ == at::kBFloat16 && p->device_.is_cpu() ? at::kFloat : p->model_dtype_;

  p->model_->to(p->device_, p->model_dtype_);
  if (p->text_encoder_) p->text_encoder_->to(p->device_, p->aux_dtype_);
  if (p->text_encoder_2_) p->text_encoder_2_->to(p->device_, p->aux_dtype_);
  if (p->vae_) p->vae_->to(p->device_, p->aux_dtype_);
  p->load_ms_ = ms_since(t0);
  return p;
}

std::vector<int64_t> Pipeline::sample_shape(int64_t width, int64_t height) const {
  const int64_t mult = manifest_.size_multiple();
  if (width < 1 || width % mult)
    throw std::invalid_argument("--width: " + std::to_string(width) + " is not a positive multiple of " +
                                std::to_string(mult) + " (unet.downsample_factor × vae_scale_factor)");
  if (height < 1 || height % mult)
    throw std::invalid_argument("--height: " + std::to_string(height) + " is not a positive multiple of " +
                                std::to_string(mult) + " (unet.downsample_factor × vae_scale_factor)");
  return {1, manifest_.in_channels, height / manifest_.vae_scale_factor, width / manifest_.vae_scale_factor};
}

GenerateRequest Pipeline::request_with_defaults(const std::string& sampler, std::optional<int64_t> steps,
                                                std::optional<double> cfg_scale, std::optional<int64_t> width,
                                                std::optional<int64_t> height) const {
  const ModelDefaults& d = manifest_.defaults;
  GenerateRequest r;
  r.sampler = sampler.empty() ? d.sampler : sampler;
  r.steps = steps.value_or(d.steps);
  r.cfg_scale = cfg_scale.value_or(d.cfg_scale);
  r.width = width.value_or(d.width);
  r.height = height.value_or(d.height);
  return r;
}

void Pipeline::check(const GenerateRequest& req) const {
  if (req.steps < 1) throw std::invalid_argument("--steps: must be at least 1, got " + std::to_string(req.steps));
  if (!(req.cfg_scale >= 0.0) || !std::isfinite(req.cfg_scale))
    throw std::invalid_argument("--cfg-scale: must be a finite number >= 0");
  const auto shape = sample_shape(req.width, req.height);
  const double rows = uses_cfg(req) ? 2.0 : 1.0;
  const double window = req.picard ? double(std::max<int64_t>(1, req.picard->window)) : 1.0;
  const double need = kBytesPerPixelRow * double(shape[2] * shape[3]) * rows * window;
  if (need > available_memory_bytes())
    throw std::invalid_argument("--width/--height: " + std::to_string(req.width) + "x" + std::to_string(req.height) +
                                " needs about " + std::to_string(int64_t(need / (1 << 20))) +
                                " MiB, more than this machine's memory");
  const SamplerInfo* found = nullptr;
  try {
    found = &find_sampler(req.sampler);
  } catch (const SamplerError& e) {
    throw std::invalid_argument(std::string("--sampler: ") + e.what());
  }
  const SamplerInfo& info = *found;
  const SchedulerConfig& sc = manifest_.scheduler;
  if (!is_flow(sc) && req.steps > sc.num_train_timesteps)
    throw std::invalid_argument("--steps: " + std::to_string(req.steps) + " exceeds the model's num_train_timesteps (" +
                                std::to_string(sc.num_train_timesteps) + ")");
  SamplerOptions opts = req.sampler_options;
  if (req.timestep_spacing) {
    const auto& s = *req.timestep_spacing;
    if (s != "leading" && s != "trailing" && s != "linspace")
      throw std::invalid_argument("--timestep-spacing: '" + s + "' is not one of leading, trailing, linspace");
  }
  resolve_sampler_options(info, opts, sc);
  if (req.cfg_split && !uses_cfg(req))
    throw std::invalid_argument(
        "--dist-split cfg: CFG is off (cfg scale 1, embedded guidance or an unconditional model): nothing to split");
  if (req.picard_split && !req.picard) throw std::invalid_argument("--dist-split picard: needs --parallel picard:...");
  if (req.init_noise.defined() && req.init_noise.sizes() != at::IntArrayRef(shape))
    throw std::invalid_argument("--init-noise: wrong shape for this model and size");
}

bool Pipeline::uses_cfg(const GenerateRequest& req) const {
  return conditional() && manifest_.guidance.mode != "embedded" && req.cfg_scale != 1.0;
}

std::pair<at::Tensor, at::Tensor> Pipeline::encode_one(const std::string& text) {
  auto ids_of = [&](const Tokenizer& tok, int64_t len) {
    return at::tensor(tok.encode_padded(text, len), at::kLong).view({1, len}).to(device_);
  };
  TextEmbedding first = text_encoder_->encode(ids_of(*tokenizer_, manifest_.text_encoder->context_length));
  at::Tensor context = first.hidden, pooled = first.pooled;
  if (text_encoder_2_) {
    // SDXL: both encoders' (penultimate) hidden states side by side; the pooled
    // embedding of the last encoder (diffusers' encode_prompt).
    TextEmbedding second = text_encoder_2_->encode(ids_of(*tokenizer_2_, manifest_.text_encoder_2->context_length));
    context = at::cat({context, second.hidden.to(context.scalar_type())}, -1);
    pooled = second.pooled;
  }
  if (manifest_.unet.addition_embed_type.empty()) pooled = at::Tensor();
  return {context.to(model_dtype_), pooled.defined() ? pooled.to(at::kFloat) : pooled};
}

Conditioning Pipeline::encode(const std::string& prompt, const std::string& negative_prompt) {
  Conditioning c;
  if (!text_encoder_) return c;
  at::NoGradGuard no_grad;
  std::tie(c.cond, c.pooled) = encode_one(prompt);
  if (manifest_.guidance.mode == "embedded") return c;
  if (negative_prompt.empty() && manifest_.guidance.force_zeros_for_empty_prompt) {
    c.uncond = at::zeros_like(c.cond);
    if (c.pooled.defined()) c.uncond_pooled = at::zeros_like(c.pooled);
  } else {
    std::tie(c.uncond, c.uncond_pooled) = encode_one(negative_prompt);
  }
  return c;
}

GenerateResult Pipeline::generate(const Conditioning& cond, const GenerateRequest& req) {
  check(req);
  at::NoGradGuard no_grad;
  const auto t_total = Clock::now();
  GenerateResult res;
  const SamplerInfo& info = find_sampler(req.sampler);
  SchedulerConfig cfg = manifest_.scheduler;
  if (req.timestep_spacing) cfg.timestep_spacing = *req.timestep_spacing;
  const ResolvedOptions opts = resolve_sampler_options(info, req.sampler_options, cfg);
  const Schedule schedule = make_schedule(cfg, info, req.steps, opts);

  const auto shape = sample_shape(req.width, req.height);
  at::Tensor noise;
  if (req.init_noise.defined()) {
    noise = req.init_noise.to(sampler_dtype_);
  } else {
    // One CPU generator per image seed: the same seed gives the same noise on any device.
    noise = seeded_unit_noise(shape, req.seed).to(sampler_dtype_);
  }

  // Extra UNet inputs, one row each: LCM's guidance embedding of w = cfg_scale
  // (diffusers passes w - 1) and SDXL's cat(pooled, time_ids).
  at::Tensor timestep_cond, added_cond, uncond_added_cond;
  if (manifest_.guidance.mode == "embedded")
    timestep_cond =
        guidance_scale_embedding(at::full({1}, req.cfg_scale - 1.0, at::kDouble), manifest_.unet.time_cond_proj_dim)
            .to(device_);
  if (manifest_.unet.addition_embed_type == "text_time") {
    const at::Tensor time_ids = sdxl_time_ids(req.width, req.height).to(device_);
    added_cond = at::cat({cond.pooled, time_ids}, 1);
    if (cond.uncond_pooled.defined()) uncond_added_cond = at::cat({cond.uncond_pooled, time_ids}, 1);
  }
  auto rows_of = [](const at::Tensor& t, int64_t rows) {
    return t.defined() ? t.expand({rows, t.size(1)}) : at::Tensor();
  };

  // The model callback: CFG batching of cond and uncond into one UNet call.
  const bool use_cfg = uses_cfg(req);
  const double scale = req.cfg_scale;
  GenerateStats& st = res.stats;
  ModelFn model_fn = [&](const at::Tensor& x, const at::Tensor& timestep) -> at::Tensor {
    const int64_t rows = x.size(0);
    at::Tensor xin = x.to(device_, model_dtype_);
    at::Tensor tin = timestep.to(device_, model_dtype_ == at::kDouble ? at::kDouble : at::kFloat);
    at::Tensor ctx;
    if (conditional()) ctx = cond.cond.expand({rows, cond.cond.size(1), cond.cond.size(2)});
    ExtraConditioning extra{rows_of(timestep_cond, rows), rows_of(added_cond, rows)};
    at::Tensor out;
    if (use_cfg && req.cfg_split) {
      // One half here at batch `rows`, the other from the partner process.
      const at::Tensor& half_ctx = req.cfg_split->cond_half ? cond.cond : cond.uncond;
      const ExtraConditioning half_extra{extra.timestep_cond, req.cfg_split->cond_half || !added_cond.defined()
                                                                  ? extra.added_cond
                                                                  : rows_of(uncond_added_cond, rows)};
      at::Tensor mine =
          model_->forward(xin, tin, half_ctx.expand({rows, half_ctx.size(1), half_ctx.size(2)}), half_extra)
              .to(x.scalar_type());
      at::Tensor theirs = req.cfg_split->exchange(mine);
      const at::Tensor& cond_out = req.cfg_split->cond_half ? mine : theirs;
      const at::Tensor& uncond_out = req.cfg_split->cond_half ? theirs : mine;
      out = uncond_out + scale * (cond_out - uncond_out);  // Ho & Salimans 2022, Eq. 6
      st.unet_rows += rows;
    } else if (use_cfg) {
      at::Tensor ctx2 = at::cat({cond.uncond.expand({rows, cond.uncond.size(1), cond.uncond.size(2)}), ctx});
      ExtraConditioning extra2{
          extra.timestep_cond.defined() ? at::cat({extra.timestep_cond, extra.timestep_cond}) : at::Tensor(),
          added_cond.defined() ? at::cat({rows_of(uncond_added_cond, rows), extra.added_cond}) : at::Tensor()};
      at::Tensor raw = model_->forward(at::cat({xin, xin}), at::cat({tin, tin}), ctx2, extra2).to(x.scalar_type());
      at::Tensor uncond_out = raw.narrow(0, 0, rows), cond_out = raw.narrow(0, rows, rows);
      out = uncond_out + scale * (cond_out - uncond_out);  // Ho & Salimans 2022, Eq. 6
      st.unet_rows += 2 * rows;
    } else {
      out = model_->forward(xin, tin, ctx, extra).to(x.scalar_type());
      st.unet_rows += rows;
    }
    st.unet_calls += 1;
    return out.to(x.device());
  };
  std::unique_ptr<Denoiser> denoiser = make_model_denoiser(model_fn, cfg);

  const auto t_sample = Clock::now();
  SampleStats sstats;
  at::Tensor x0;
  {
    RECORD_USER_SCOPE("sampler");
    x0 = sample(info, schedule, *denoiser, noise.to(device_), opts, req.seed, req.on_step, req.picard, &sstats,
                req.picard_split ? &*req.picard_split : nullptr);
  }
  st.sampling_ms = ms_since(t_sample);
  st.nfe = sstats.nfe;
  st.picard_rounds = sstats.picard_rounds;
  res.latents = x0.cpu();

  const auto t_decode = Clock::now();
  at::Tensor image = x0;
  if (vae_) image = vae_->decode(x0.to(aux_dtype_));
  res.image = to_rgb8(image);
  st.decode_ms = ms_since(t_decode);
  st.total_ms = ms_since(t_total);
  return res;
}

}  // namespace fewstep
