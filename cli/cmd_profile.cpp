// `fewstep profile`: one generation under LibTorch's Kineto profiler.
#include <iostream>

#include "cli/common.h"
#include "pipeline/image_io.h"
#include "pipeline/profile.h"

namespace fewstep::cli {
namespace {

struct ProfileCliOptions {
  ProfileOptions p;
  std::string timestep_spacing, out;
  std::vector<std::string> sampler_options;
  int64_t seed = 0;
};

void run_profile_command(ProfileCliOptions& c) {
  if (c.seed < 0) throw std::invalid_argument("--seed: must be non-negative");
  c.p.seed = static_cast<uint64_t>(c.seed);
  c.p.sampler_options = parse_sampler_options(c.sampler_options);
  if (!c.timestep_spacing.empty()) c.p.timestep_spacing = c.timestep_spacing;
  c.p.out = c.out;
  ProfileReport r;
  cleaning_new_folder_on_error(c.p.out, [&] { r = run_profile(c.p); });
  std::cout << "Profiled one prompt encoding and generation after a warm-up: " << r.description << "\n\n"
            << "Top operators and kernels by self time (" << r.events << " events)\n"
            << format_op_table(r.ops) << "\nPipeline stages\n"
            << format_stage_table(r.stages, r.total_ms) << "\nwrote " << r.trace.string()
            << " (open in https://ui.perfetto.dev)\n";
}

}  // namespace

void register_profile_command(CLI::App& app) {
  auto o = std::make_shared<ProfileCliOptions>();
  CLI::App* cmd = app.add_subcommand("profile", "Profile one generation (Kineto): top ops, stages, trace.json");
  cmd->add_option("--model,-m", o->p.model, "model package folder or analytic:<name> (default: the embedded model)");
  cmd->add_option("--prompt,-p", o->p.prompt, "text prompt");
  cmd->add_option("--negative-prompt,-n", o->p.negative_prompt, "negative prompt");
  cmd->add_option("--sampler", o->p.sampler, "sampler name (default: the model's)");
  cmd->add_option("--steps", o->p.steps, "sampling steps (default: the model's)");
  cmd->add_option("--cfg-scale", o->p.cfg_scale, "classifier-free guidance scale (default: the model's)");
  cmd->add_option("--seed,-s", o->seed, "random seed")->capture_default_str();
  cmd->add_option("--width,-W", o->p.width, "image width in pixels (default: the model's)");
  cmd->add_option("--height,-H", o->p.height, "image height in pixels (default: the model's)");
  cmd->add_option("--timestep-spacing", o->timestep_spacing, "leading, trailing or linspace");
  cmd->add_option("--sampler-option", o->sampler_options, "sampler option key=value (repeatable)")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  add_runtime_flags(*cmd, o->p.rt);
  cmd->add_option("--top", o->p.top, "rows in the operator table")->capture_default_str();
  cmd->add_option("--out,-o", o->out, "output folder for trace.json")->required();
  cmd->callback([o] { run_profile_command(*o); });
}

}  // namespace fewstep::cli
