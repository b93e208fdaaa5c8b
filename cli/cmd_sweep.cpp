// `fewstep sweep`: samplers × step counts × seeds against a reference.
#include <fstream>
#include <iostream>

#include "cli/common.h"
#include "dist/group.h"
#include "eval/sweep.h"

namespace fewstep::cli {
namespace {

struct SweepCliOptions {
  SharedFlags f;
  std::string prompts_file, seeds = "0";
  std::string parallel, reference, out, tolerances;
  bool quiet = false, resume = false;
};

std::vector<std::string> read_prompts(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw std::invalid_argument("--prompts: cannot read " + file);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) out.push_back(line);
  }
  if (out.empty()) throw std::invalid_argument("--prompts: " + file + " has no prompts (one per line)");
  return out;
}

void run_sweep_command(const SweepCliOptions& c) {
  const SharedFlags& f = c.f;
  SweepOptions o;
  o.model = f.model;
  if (!c.prompts_file.empty() && !f.prompt.empty())
    throw std::invalid_argument("--prompt and --prompts: give one or the other");
  o.prompts = c.prompts_file.empty() ? std::vector<std::string>{f.prompt} : read_prompts(c.prompts_file);
  o.negative_prompt = f.negative_prompt;
  o.samplers = parse_list("--samplers", f.sampler);
  // Adaptive samplers (dpm_adaptive) sweep --tolerances instead of --steps.
  if (!f.steps.empty()) o.steps = parse_int_list("--steps", f.steps);
  if (!c.tolerances.empty()) o.tolerances = parse_real_list("--tolerances", c.tolerances);
  o.seeds.clear();
  for (int64_t s : parse_int_list("--seeds", c.seeds)) {
    if (s < 0) throw std::invalid_argument("--seeds: must be non-negative, got " + std::to_string(s));
    o.seeds.push_back(static_cast<uint64_t>(s));
  }
  o.cfg_scale = f.cfg_scale;
  o.width = f.width;
  o.height = f.height;
  o.timestep_spacing = spacing_of(f);
  o.sampler_options = parse_option_items(f.sampler_options);
  if (!c.parallel.empty()) o.picard = parse_picard(c.parallel);
  o.reference = c.reference;
  o.rt = f.rt;
  o.out = c.out;
  o.resume = c.resume;
  SweepResult r;
  bool root = true;
  cleaning_new_folder_on_error(o.out, [&] {
    check_sweep_options(o);  // before the model loads (and before the ranks meet)
    run_in_group(f, [&](dist::Group& g) {
      root = g.rank() == 0;
      ProgressBar bar(g.distributed() ? "sweep, rank " + std::to_string(g.rank()) : "sweep", 0,
                      !c.quiet && stderr_is_tty());
      r = run_sweep(
          o,
          [&bar](int64_t done, int64_t total) {
            bar.set_total(total);
            bar.update(done);
          },
          &g);
      bar.finish();
    });
  });
  if (c.quiet || !root) return;
  std::cout << r.rows.size() << (r.rows.size() == 1 ? " run" : " runs") << " against the reference ("
            << r.reference.describe() << ")\n";
  for (const auto& f : r.files) std::cout << "wrote " << f.string() << "\n";
}

}  // namespace

void register_sweep_command(CLI::App& app) {
  auto o = std::make_shared<SweepCliOptions>();
  CLI::App* cmd = app.add_subcommand("sweep", "Quality against cost: samplers x steps x seeds vs a reference");
  add_shared_flags(*cmd, o->f, Axis::list);
  cmd->add_option("--prompts", o->prompts_file, "file with one prompt per line (instead of --prompt)");
  cmd->add_option("--seeds", o->seeds, "comma-separated seeds")->capture_default_str();
  cmd->add_option("--parallel", o->parallel, "Picard-parallel sampling for the swept runs: picard:window=P,tol=T");
  cmd->add_option("--tolerances", o->tolerances,
                  "comma-separated rtol values: the axis of adaptive samplers (dpm_adaptive) instead of --steps");
  cmd->add_option("--reference", o->reference,
                  "SAMPLER:STEPS (default: the exact solution for analytic models, else unipc:250)");
  cmd->add_option("--out,-o", o->out, "output folder (created; its sweep files are replaced)")->required();
  cmd->add_flag("--quiet,-q", o->quiet, "print nothing but errors");
  cmd->add_flag("--resume", o->resume,
                "reuse the finished units in OUT/units/ (written as each run finishes; kept after a failure or an "
                "interrupt) and run only the missing ones");
  cmd->callback([o] { run_sweep_command(*o); });
}

}  // namespace fewstep::cli
