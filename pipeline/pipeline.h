// fewstep text-to-image pipeline: prompt -> tokenizer -> text encoder ->
// CFG-batched denoiser -> sampler -> (VAE) -> 8-bit RGB.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "image/image.h"
#include "tokenizer/tokenizer.h"
#include "samplers/sample.h"
#include "unet/model.h"
#include "unet/package.h"
#include "unet/torchscript.h"

namespace fewstep {

/// Where and how the model runs.
struct RuntimeOptions {
  std::string device = "cpu";       ///< cpu | cuda | cuda:N
  std::string dtype = "fp32";       ///< fp32 | fp16 (CUDA) | bf16 | fp64 (analytic models only)
  int threads = 0;                  ///< LibTorch intra-op threads; 0 = all cores
  std::string attention = "fused";  ///< fused | native
  std::string fusion = "all";       ///< all (fused kernels + channels-last CPU UNet) | kernels | none (kernels/fused.h)
};

/// Prompt embeddings, computed once and reused for every seed.
struct Conditioning {
  /// encoder_hidden_states [1, L, D] on the model device and dtype (SDXL: D =
  /// D1 + D2, the two encoders' hidden states concatenated); undefined for
  /// unconditional models. `uncond` is also undefined with embedded guidance,
  /// which has no unconditional pass.
  at::Tensor cond, uncond;
  /// Pooled text embeddings [1, P] float32 on the model device, from the last
  /// text encoder, when the UNet takes added_cond (SDXL); else undefined.
  at::Tensor pooled, uncond_pooled;
};

/// Classifier-free guidance across two processes (xDiT's CFG parallelism):
/// this process runs one half of every CFG UNet call at batch 1 and
/// `exchange` returns the other process's half (same shape). Both
/// processes then combine the halves identically, so their trajectories
/// stay equal. Set by the distributed layer (dist/ through the CLI).
struct CfgSplit {
  bool cond_half = true;  ///< this process runs the conditional half (else the unconditional)
  std::function<at::Tensor(const at::Tensor& mine)> exchange;
};

/// One image's request. `steps`, `cfg_scale` etc. are already resolved
/// against the manifest defaults.
struct GenerateRequest {
  std::string sampler;
  int64_t steps = 20;
  double cfg_scale = 7.5;
  uint64_t seed = 0;
  int64_t width = 0, height = 0;  ///< pixels
  std::optional<std::string> timestep_spacing;
  SamplerOptions sampler_options;  ///< as given by the user (validated by check())
  std::optional<PicardOptions> picard;
  /// Optional unit-variance initial noise [1, C, h, w] float32; when
  /// undefined it is drawn from `seed`. Stochastic samplers draw their step
  /// noise from `seed` either way (draws_step_noise).
  at::Tensor init_noise;
  StepCallback on_step;
  std::optional<CfgSplit> cfg_split;        ///< CFG halves on two processes (needs CFG on)
  std::optional<PicardSplit> picard_split;  ///< Picard windows across processes (needs `picard`)
};

/// Timings in milliseconds and model-call counts, as `--stats-json` writes them.
struct GenerateStats {
  double encode_ms = 0, sampling_ms = 0, decode_ms = 0, total_ms = 0;
  int64_t nfe = 0, unet_calls = 0, unet_rows = 0, picard_rounds = 0;
};

struct GenerateResult {
  at::Tensor latents;  ///< final sample before decoding, [1, C, h, w] float32 (float64 for fp64) on CPU
  Image image;         ///< 8-bit RGB
  GenerateStats stats;
};

/// Loaded model and runtime. Thread-compatible, not thread-safe.
class Pipeline {
 public:
  /// model: a package folder, or `analytic:gaussian[:opts]` / `analytic:gmm[:opts]`.
  /// Throws ModelError / std::runtime_error with a one-line message.
  static std::unique_ptr<Pipeline> load(const std::string& model, const RuntimeOptions& rt);
  virtual ~Pipeline() = default;

  const ModelManifest& manifest() const { return manifest_; }
  double load_ms() const { return load_ms_; }
  bool conditional() const { return text_encoder_ != nullptr; }
  /// Model-space sample shape [1, C, h, w] for a pixel size. Throws
  /// std::invalid_argument naming --width/--height when it does not fit.
  std::vector<int64_t> sample_shape(int64_t width, int64_t height) const;
  /// A request with the manifest's defaults for every value not given
  /// (sampler "" = the default sampler).
  GenerateRequest request_with_defaults(const std::string& sampler, std::optional<int64_t> steps,
                                        std::optional<double> cfg_scale, std::optional<int64_t> width,
                                        std::optional<int64_t> height) const;
  /// Validates a request before any work: sampler name, options, steps,
  /// cfg_scale, size and memory estimate. Throws std::invalid_argument with
  /// a one-line message naming the flag.
  void check(const GenerateRequest& req) const;
  /// Encodes prompt and negative prompt (CLIP tokenizer, padded with the
  /// manifest's pad_id to the context length; truncation warns). Empty
  /// prompts are valid. With text_encoder_2 (SDXL, Podell et al. 2023):
  /// context = cat(hidden_1, hidden_2, -1), pooled from text_encoder_2; with
  /// guidance.force_zeros_for_empty_prompt an empty negative prompt gives
  /// zeros (context and pooled), as diffusers does. Embedded guidance encodes
  /// no negative prompt.
  Conditioning encode(const std::string& prompt, const std::string& negative_prompt);
  /// Runs one image: noise, sampler, decode, 8-bit RGB. Guidance by
  /// manifest.guidance.mode: "cfg"/"none" run CFG (cond and uncond in one
  /// batched UNet call; skipped at cfg_scale 1); "embedded" runs one row per
  /// image with timestep_cond = guidance_scale_embedding(cfg_scale - 1, D).
  /// A text_time UNet gets added_cond = cat(pooled, sdxl_time_ids(width, height)).
  GenerateResult generate(const Conditioning& cond, const GenerateRequest& req);
  /// Whether `req` runs CFG (two rows per image per UNet call).
  bool uses_cfg(const GenerateRequest& req) const;
  /// Notices about the model (manifest.warnings), printed once by load().
  const std::vector<std::string>& warnings() const { return manifest_.warnings; }
  /// Parameter counts per module, for `fewstep info`.
  int64_t unet_parameters() const { return model_->parameter_count(); }
  int64_t text_encoder_parameters() const {
    return (text_encoder_ ? text_encoder_->parameter_count() : 0) +
           (text_encoder_2_ ? text_encoder_2_->parameter_count() : 0);
  }
  int64_t vae_parameters() const { return vae_ ? vae_->parameter_count() : 0; }
  at::Device device() const { return device_; }
  /// The denoising model (a TorchScript UNet or an AnalyticModel).
  Model& model() { return *model_; }
  bool analytic() const { return analytic_; }
  at::ScalarType model_dtype() const { return model_dtype_; }
  /// The dtype of the sampler's math: float64 for --dtype fp64, else float32.
  at::ScalarType sampler_dtype() const { return sampler_dtype_; }

 private:
  Pipeline() = default;
  ModelManifest manifest_;
  std::unique_ptr<Model> model_;
  /// Encodes one prompt: (context [1, L, D], pooled [1, P] float32 or undefined).
  std::pair<at::Tensor, at::Tensor> encode_one(const std::string& text);
  std::unique_ptr<TextEncoder> text_encoder_, text_encoder_2_;
  std::unique_ptr<VaeDecoder> vae_;
  std::optional<Tokenizer> tokenizer_, tokenizer_2_;
  at::Device device_ = at::kCPU;
  at::ScalarType model_dtype_ = at::kFloat, sampler_dtype_ = at::kFloat;
  at::ScalarType aux_dtype_ = at::kFloat;  // text encoder and VAE decoder: model_dtype_, but fp32 for bf16 on the CPU
  double load_ms_ = 0;
  bool analytic_ = false;
};

/// Whether a run of `req` draws step noise from its seed: the sampler's
/// `eta` when it has one, else whether it is stochastic (samplers'
/// draws_step_noise with the request's resolved options). Throws
/// SamplerError for an unknown sampler or option.
bool draws_step_noise(const GenerateRequest& req);

/// Parses --dtype names (fp32/float32, fp16/float16/half, bf16/bfloat16, fp64/float64).
/// Throws std::invalid_argument.
at::ScalarType parse_dtype(const std::string& name);

}  // namespace fewstep
