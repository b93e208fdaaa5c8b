// `fewstep generate`: text to PNG.
#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>
#include <filesystem>
#include <cstring>
#include <iostream>
#include <map>

#include "cli/common.h"
#include "common/parse.h"
#include "dist/group.h"
#include "image/png.h"
#include "io/files.h"
#include "pipeline/parameters.h"
#include "pipeline/tensor_io.h"
#include "pipeline/model_source.h"
#include "samplers/registry.h"

namespace fewstep::cli {
namespace {

struct GenerateOptions {
  SharedFlags f;
  std::string seed = "-1";
  int64_t batch_count = 1;
  std::string parallel;
  std::string init_noise, save_latents, stats_json, out;
  bool overwrite = false, quiet = false;
  int64_t upscale = 1;
  std::string upscale_filter = "nearest";
  std::string dist_split;  ///< --dist-split: "" (the default for the run), batch, cfg, picard
};

/// --seed: "-1" (random) or an integer in [0, 2^64 - 1]; anything else is refused
/// rather than clamped, so that two different seeds never give one image.
uint64_t parse_seed(const std::string& text) {
  if (trim(text) == "-1") return random_seed();
  const auto v = parse_unsigned(text);
  if (!v)
    throw std::invalid_argument("--seed: '" + text +
                                "' is not -1 (random) or an integer from 0 to 18446744073709551615");
  return *v;
}

/// Where image `seed` goes: --out as given (".png" added when it has no
/// extension), with "-<seed>" before the extension for -b N; default
/// fewstep-<seed>.png. Throws std::invalid_argument for another extension.
std::filesystem::path output_path(const GenerateOptions& o, uint64_t seed) {
  const std::string seed_s = std::to_string(seed);
  if (o.out.empty()) return "fewstep-" + seed_s + ".png";
  std::filesystem::path p(o.out);
  std::string ext = p.extension().string();
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (!ext.empty() && ext != ".png")
    throw std::invalid_argument("--out: fewstep writes PNG files; '" + o.out + "' has the extension " +
                                p.extension().string());
  if (o.batch_count == 1) return ext.empty() ? std::filesystem::path(o.out + ".png") : p;
  return p.parent_path() / (p.stem().string() + "-" + seed_s + ".png");
}

/// Where the images of a batch run (--dist-split): the ranks that work on
/// image k and the one whose result is kept.
struct ImagePlan {
  std::string split;  ///< batch | cfg | picard ("batch" in one process)
  int world = 1;
  bool works_on(int64_t k, int rank) const {
    if (split == "picard") return true;
    if (split == "cfg") return rank / 2 == k % (world / 2);
    return rank == k % world;
  }
  int owner(int64_t k) const {
    if (split == "picard") return 0;
    if (split == "cfg") return static_cast<int>(2 * (k % (world / 2)));
    return static_cast<int>(k % world);
  }
};

/// The split for this run: --dist-split, else picard with --parallel,
/// batch for -b > 1, cfg for one image with CFG on, else batch (rank 0
/// alone). Throws std::invalid_argument naming --dist-split.
ImagePlan plan_images(const GenerateOptions& o, bool cfg_on, bool picard, int world) {
  ImagePlan p;
  p.world = world;
  if (world == 1) {
    p.split = "batch";
    return p;
  }
  p.split = o.dist_split;
  if (p.split.empty()) p.split = picard ? "picard" : o.batch_count > 1 ? "batch" : cfg_on ? "cfg" : "batch";
  if (p.split == "cfg" && !cfg_on)
    throw std::invalid_argument(
        "--dist-split cfg: CFG is off (cfg scale 1 or an unconditional model): nothing to split");
  if (p.split == "cfg" && world % 2 != 0)
    throw std::invalid_argument("--dist-split cfg: needs an even number of ranks (pairs), WORLD_SIZE is " +
                                std::to_string(world));
  if (p.split == "picard" && !picard) throw std::invalid_argument("--dist-split picard: needs --parallel picard:...");
  return p;
}

/// What a rank sends rank 0 at the end: its kept images and its counters.
std::vector<uint8_t> pack_results(const std::map<int64_t, std::pair<std::vector<uint8_t>, GenerateResult>>& kept,
                                  int64_t images, int64_t unet_calls, int64_t unet_rows, double collective_ms) {
  nlohmann::json j = {{"images", images},
                      {"unet_calls", unet_calls},
                      {"unet_rows", unet_rows},
                      {"collective_ms", collective_ms},
                      {"kept", nlohmann::json::array()}};
  for (const auto& [k, kv] : kept) {
    const GenerateStats& st = kv.second.stats;
    j["kept"].push_back({{"k", k},
                         {"png", nlohmann::json::binary(kv.first)},
                         {"latents", nlohmann::json::binary(encode_npy(kv.second.latents))},
                         {"sampling_ms", st.sampling_ms},
                         {"decode_ms", st.decode_ms},
                         {"total_ms", st.total_ms},
                         {"nfe", st.nfe},
                         {"picard_rounds", st.picard_rounds}});
  }
  return nlohmann::json::to_cbor(j);
}

int run_generate(GenerateOptions& o) {
  // Everything that can be checked without the model (and without the other
  // ranks) is checked first.
  const SharedFlags& f = o.f;
  const SamplerOptions sampler_opts = parse_option_items(f.sampler_options);
  const std::optional<int64_t> steps = single_steps(f);
  std::optional<PicardOptions> picard;
  if (!o.parallel.empty()) picard = parse_picard(o.parallel);
  if (o.batch_count < 1) throw std::invalid_argument("--batch-count: must be at least 1");
  if (o.upscale < 1 || o.upscale > 64) throw std::invalid_argument("--upscale: must be between 1 and 64");
  uint64_t seed0 = parse_seed(o.seed);
  run_in_group(f, [&](dist::Group& g) {
    const bool root = g.rank() == 0;
    // A random seed is rank 0's, so that every rank draws the same noise.
    if (g.distributed()) {
      std::vector<uint8_t> b(8);
      std::memcpy(b.data(), &seed0, 8);
      b = g.broadcast_bytes(b, "the seed");
      std::memcpy(&seed0, b.data(), 8);
    }
    // Rank 0 writes every file.
    std::vector<std::filesystem::path> outs;
    for (int64_t i = 0; i < o.batch_count; ++i) {
      outs.push_back(output_path(o, seed0 + static_cast<uint64_t>(i)));
      if (root) check_writable(outs.back());
    }
    if (root && !o.save_latents.empty()) check_writable(o.save_latents);
    if (root && !o.stats_json.empty()) check_writable(o.stats_json);
    at::Tensor init_noise;
    if (!o.init_noise.empty()) init_noise = read_npy_float32(o.init_noise);

    const std::string model = f.model.empty() ? default_model_dir() : f.model;
    auto pipe = Pipeline::load(model, f.rt);
    const ModelManifest& m = pipe->manifest();

    GenerateRequest req = pipe->request_with_defaults(f.sampler, steps, f.cfg_scale, f.width, f.height);
    req.timestep_spacing = spacing_of(f);
    req.sampler_options = sampler_opts;
    req.picard = picard;
    pipe->check(req);
    req.sampler = find_sampler(req.sampler).name;  // aliases (diffusers class names) resolved for the records
    if (root && steps && find_sampler(req.sampler).adaptive && !o.quiet)
      std::cerr << "note: " << req.sampler << " picks its own steps (error control, rtol/atol); --steps is ignored\n";
    if (!pipe->conditional()) {
      // What had no effect is neither used nor recorded.
      if (root && (!f.prompt.empty() || !f.negative_prompt.empty() || f.cfg_scale))
        std::cerr << "warning: " << m.name
                  << " is unconditional: --prompt, --negative-prompt and --cfg-scale are ignored\n";
      o.f.prompt.clear();
      o.f.negative_prompt.clear();
      req.cfg_scale = 1.0;
    }
    if (m.guidance.mode == "embedded") {
      // LCM: w enters the UNet through timestep_cond; there is no unconditional pass.
      if (root && !o.quiet)
        std::cerr << "note: " << m.name << " has embedded guidance (LCM): --cfg-scale sets w = " << req.cfg_scale
                  << " in the UNet's guidance embedding; one UNet call per step, no unconditional pass\n";
      if (root && !f.negative_prompt.empty())
        std::cerr << "warning: " << m.name << " has embedded guidance: --negative-prompt is ignored\n";
      o.f.negative_prompt.clear();
    }
    if (init_noise.defined()) {
      auto shape = pipe->sample_shape(req.width, req.height);
      shape[0] = o.batch_count;
      if (init_noise.sizes() != at::IntArrayRef(shape)) {
        std::string want;
        for (auto d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
        throw std::invalid_argument(o.init_noise + ": shape must be [" + want + "] (batch count, channels, h, w)");
      }
    }
    const bool cfg_on = pipe->uses_cfg(req);  // not with embedded guidance (LCM): one UNet row per step
    const ImagePlan plan = plan_images(o, cfg_on, picard.has_value(), g.world_size());
    const int rank = g.rank();
    if (plan.split == "cfg") {
      const int peer = rank ^ 1;
      req.cfg_split = CfgSplit{rank % 2 == 0, [&g, peer](const at::Tensor& mine) {
                                 return g.exchange(mine, peer, "the CFG exchange with rank " + std::to_string(peer));
                               }};
    } else if (plan.split == "picard" && g.distributed()) {
      req.picard_split =
          PicardSplit{rank, g.world_size(), [&g](const at::Tensor& local, const std::vector<int64_t>& counts) {
                        return g.allgather_rows(local, counts, "the Picard window gather");
                      }};
    }

    const auto t_enc = std::chrono::steady_clock::now();
    Conditioning cond = pipe->encode(f.prompt, f.negative_prompt);
    const double encode_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_enc).count();

    std::map<int64_t, std::pair<std::vector<uint8_t>, GenerateResult>> kept;  // image k -> PNG, result
    int64_t my_images = 0, my_calls = 0, my_rows = 0;
    for (int64_t i = 0; i < o.batch_count; ++i) {
      if (!plan.works_on(i, rank)) continue;
      req.seed = seed0 + static_cast<uint64_t>(i);
      if (init_noise.defined()) req.init_noise = init_noise.narrow(0, i, 1);
      ProgressBar bar("seed " + std::to_string(req.seed), req.steps, root && !o.quiet && stderr_is_tty());
      req.on_step = [&bar](int64_t i_step, int64_t, const at::Tensor&) { bar.update(i_step + 1); };
      GenerateResult r = pipe->generate(cond, req);
      bar.finish();
      ++my_images;
      my_calls += r.stats.unet_calls;
      my_rows += r.stats.unet_rows;
      if (plan.owner(i) != rank) continue;
      const Image img = upscale(r.image, static_cast<int>(o.upscale), o.upscale_filter == "smooth");
      kept[i] = {
          encode_png(img, "parameters", format_parameters(f.prompt, f.negative_prompt, req, m.name, m.guidance.mode)),
          std::move(r)};
    }
    // Rank 0 gathers every rank's kept images (after uneven work: wait first).
    g.wait_all("generate results");
    const std::vector<std::vector<uint8_t>> parts =
        g.gather_bytes(pack_results(kept, my_images, my_calls, my_rows, g.collective_ms()), "the images");
    if (!root) return;

    GenerateStats total;
    total.encode_ms = encode_ms;
    std::vector<std::vector<uint8_t>> pngs(static_cast<size_t>(o.batch_count));
    std::vector<at::Tensor> latents(static_cast<size_t>(o.batch_count));
    nlohmann::json rank_images = nlohmann::json::array(), rank_calls = nlohmann::json::array();
    double collective_ms = 0;
    for (size_t r = 0; r < parts.size(); ++r) {
      const nlohmann::json j = nlohmann::json::from_cbor(parts[r]);
      rank_images.push_back(j["images"]);
      rank_calls.push_back(j["unet_calls"]);
      total.unet_calls += j["unet_calls"].get<int64_t>();
      total.unet_rows += j["unet_rows"].get<int64_t>();
      if (r == 0) collective_ms = j["collective_ms"].get<double>();
      for (const auto& e : j["kept"]) {
        const auto k = static_cast<size_t>(e["k"].get<int64_t>());
        pngs[k] = e["png"].get_binary();
        latents[k] = decode_npy(e["latents"].get_binary(), "rank " + std::to_string(r) + "'s latents");
        total.sampling_ms += e["sampling_ms"].get<double>();
        total.decode_ms += e["decode_ms"].get<double>();
        total.total_ms += e["total_ms"].get<double>();
        total.nfe += e["nfe"].get<int64_t>();
        total.picard_rounds += e["picard_rounds"].get<int64_t>();
      }
    }
    // Outputs are written only once every image succeeded: no partial results.
    for (size_t i = 0; i < pngs.size(); ++i) {
      auto written = write_file_atomic(outs[i], pngs[i], o.overwrite);
      if (!o.quiet) {
        std::cout << "wrote " << written.string() << " (seed " << seed0 + i << ")";
        if (written != outs[i]) std::cout << "; " << outs[i].string() << " exists, use --overwrite to replace it";
        std::cout << "\n";
      }
    }
    if (!o.save_latents.empty()) write_file_atomic(o.save_latents, encode_npy(at::cat(latents)), true);
    if (!o.stats_json.empty()) {
      auto ms = [](double v) { return std::round(v * 1000.0) / 1000.0; };  // microsecond resolution
      nlohmann::json j = {{"load_ms", ms(pipe->load_ms())},
                          {"encode_ms", ms(total.encode_ms)},
                          {"sampling_ms", ms(total.sampling_ms)},
                          {"decode_ms", ms(total.decode_ms)},
                          {"total_ms", ms(pipe->load_ms() + total.encode_ms + total.total_ms)},
                          {"nfe", total.nfe},
                          {"unet_calls", total.unet_calls},
                          {"unet_rows", total.unet_rows},
                          {"picard_rounds", total.picard_rounds},
                          {"guidance", m.guidance.mode},
                          {"steps", req.steps},
                          {"sampler", req.sampler},
                          {"seed", seed0},
                          {"batch_count", o.batch_count}};
      if (g.distributed()) {
        j["world_size"] = g.world_size();
        j["dist_split"] = plan.split;
        j["rank_images"] = rank_images;
        j["rank_unet_calls"] = rank_calls;
        j["collective_ms"] = ms(collective_ms);
      }
      std::string s = j.dump(2) + "\n";
      write_file_atomic(o.stats_json, std::vector<uint8_t>(s.begin(), s.end()), true);
    }
  });
  return 0;
}

}  // namespace

void register_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate images from a text prompt");
  add_shared_flags(*cmd, o->f, Axis::one);
  cmd->add_option("--seed,-s", o->seed, "random seed, 0 to 2^64-1; -1 = random (the default), printed");
  cmd->add_option("--batch-count,-b", o->batch_count, "images to make, with seeds seed, seed+1, ...");
  cmd->add_option("--parallel", o->parallel, "Picard-parallel sampling: picard:window=P,tol=T[,max_rounds=R]");
  cmd->add_option("--init-noise", o->init_noise, "unit-variance noise .npy, float32 [N, C, h, w]");
  cmd->add_option("--save-latents", o->save_latents, "write the final samples as .npy [N, C, h, w]");
  cmd->add_option("--stats-json", o->stats_json, "write timings and model-call counts as JSON");
  cmd->add_option("--out,-o", o->out, "output .png (default fewstep-<seed>.png); with -b N: NAME-<seed>.png");
  cmd->add_flag("--overwrite", o->overwrite, "replace existing output files");
  cmd->add_option("--upscale", o->upscale, "enlarge the saved image by this integer factor");
  cmd->add_option("--upscale-filter", o->upscale_filter, "nearest or smooth")
      ->check(CLI::IsMember({"nearest", "smooth"}));
  cmd->add_flag("--quiet,-q", o->quiet, "print nothing but errors");
  cmd->add_option("--dist-split", o->dist_split,
                  "how ranks share the work: batch (image k on rank k mod WORLD_SIZE; the default for -b > 1), cfg "
                  "(the CFG halves on a pair of ranks; the default for one image with CFG), picard (Picard "
                  "windows across ranks; the default with --parallel)")
      ->check(CLI::IsMember({"batch", "cfg", "picard"}));
  cmd->callback([o] { run_generate(*o); });
}

}  // namespace fewstep::cli
