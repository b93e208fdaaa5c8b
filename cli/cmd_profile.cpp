// `fewstep profile`: one generation under LibTorch's Kineto profiler.
#include <iostream>

#include "cli/common.h"
#include "dist/group.h"
#include "eval/profile.h"

namespace fewstep::cli {
namespace {

struct ProfileCliOptions {
  SharedFlags f;
  ProfileOptions p;
  std::string out;
  int64_t seed = 0;
};

void run_profile_command(ProfileCliOptions& c) {
  if (c.seed < 0) throw std::invalid_argument("--seed: must be non-negative");
  const SharedFlags& f = c.f;
  c.p.seed = static_cast<uint64_t>(c.seed);
  c.p.model = f.model;
  c.p.prompt = f.prompt;
  c.p.negative_prompt = f.negative_prompt;
  c.p.sampler = f.sampler;
  c.p.steps = single_steps(f);
  c.p.cfg_scale = f.cfg_scale;
  c.p.width = f.width;
  c.p.height = f.height;
  c.p.timestep_spacing = spacing_of(f);
  c.p.sampler_options = parse_option_items(f.sampler_options);
  c.p.rt = f.rt;
  c.p.out = c.out;
  ProfileReport r;
  bool root = true;
  cleaning_new_folder_on_error(c.p.out, [&] {
    run_in_group(f, [&](dist::Group& g) {
      root = g.rank() == 0;
      if (!g.distributed()) {
        r = run_profile(c.p);
        return;
      }
      // Rank 0's share: the CFG halves on ranks 0 and 1 when CFG is on
      // (as generate -b 1), else rank 0 alone. Rank 0 writes the trace.
      const int rank = g.rank();
      if (rank < 2) {
        ProfileOptions p = c.p;
        p.write_trace = root;
        p.prepare = [&g, rank](const Pipeline& pipe, GenerateRequest& req) {
          if (!(pipe.conditional() && req.cfg_scale != 1.0)) return rank == 0;
          const int peer = rank ^ 1;
          req.cfg_split =
              CfgSplit{rank == 0, [&g, peer](const at::Tensor& mine) {
                         return g.exchange(mine, peer, "the CFG exchange with rank " + std::to_string(peer));
                       }};
          return true;
        };
        r = run_profile(p);
      }
      g.wait_all("profile done");
    });
  });
  if (!root) return;
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
  add_shared_flags(*cmd, o->f, Axis::one);
  cmd->add_option("--seed,-s", o->seed, "random seed")->capture_default_str();
  cmd->add_option("--top", o->p.top, "rows in the operator table")->capture_default_str();
  cmd->add_option("--out,-o", o->out, "output folder for trace.json")->required();
  cmd->callback([o] { run_profile_command(*o); });
}

}  // namespace fewstep::cli
