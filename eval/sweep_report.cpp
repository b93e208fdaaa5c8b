// The sweep's tables: results.csv and summary.md (see sweep.h, docs/sweep.md).
#include "eval/sweep.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "eval/sweep_internal.h"
#include "samplers/registry.h"

namespace fewstep {
namespace {

std::string num(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (std::isnan(v)) return "nan";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string db(double v) {
  if (std::isinf(v)) return "inf";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", v);
  return buf;
}

std::string fixed4(double v) {
  if (!std::isfinite(v)) return num(v);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4f", v);
  return buf;
}

std::string ms(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", v);
  return buf;
}

}  // namespace

std::vector<SweepSetting> aggregate_settings(const std::vector<SweepRow>& rows) {
  std::vector<SweepSetting> out;
  std::map<std::pair<std::string, int64_t>, size_t> index;
  std::vector<double> mse, n;
  for (const SweepRow& r : rows) {
    auto [it, fresh] = index.try_emplace({r.sampler, r.steps}, out.size());
    if (fresh) {
      SweepSetting fresh_setting;
      fresh_setting.sampler = r.sampler;
      fresh_setting.steps = r.steps;
      out.push_back(fresh_setting);
      mse.push_back(0);
      n.push_back(0);
    }
    SweepSetting& s = out[it->second];
    const size_t k = it->second;
    s.nfe += double(r.nfe);
    s.wall_ms += r.wall_ms;
    s.rmse_latent += r.rmse_latent;
    s.ssim += r.ssim;
    mse[k] += r.rmse * r.rmse;
    n[k] += 1;
  }
  for (size_t k = 0; k < out.size(); ++k) {
    out[k].nfe /= n[k];
    out[k].wall_ms /= n[k];
    out[k].rmse_latent /= n[k];
    out[k].ssim /= n[k];
    out[k].psnr_db = 10.0 * -std::log10(mse[k] / n[k]);  // +inf when every image matched
  }
  return out;
}

std::vector<SweepSetting> pareto_front(const std::vector<SweepSetting>& settings) {
  std::vector<SweepSetting> front;
  for (const SweepSetting& p : settings) {
    bool dominated = false;
    for (const SweepSetting& q : settings) {
      const bool no_worse = q.nfe <= p.nfe && q.psnr_db >= p.psnr_db;
      const bool better = q.nfe < p.nfe || q.psnr_db > p.psnr_db;
      if (no_worse && better) {
        dominated = true;
        break;
      }
    }
    if (!dominated) front.push_back(p);
  }
  // No order or choice depends on wall time, which differs between runs
  // (and between ranks): ties go to the higher PSNR, then first seen.
  std::stable_sort(front.begin(), front.end(), [](const SweepSetting& a, const SweepSetting& b) {
    return a.nfe != b.nfe ? a.nfe < b.nfe : a.psnr_db > b.psnr_db;
  });
  return front;
}

std::string format_results_csv(const std::vector<SweepRow>& rows) {
  std::ostringstream s;
  s << "prompt,sampler,steps,seed,nfe,unet_calls,unet_flops,wall_ms,rmse_latent,rmse,psnr_db,ssim,rank\n";
  for (const SweepRow& r : rows) {
    char flops[32] = "";
    if (r.unet_flops) std::snprintf(flops, sizeof(flops), "%.0f", *r.unet_flops);
    s << csv_field(r.prompt) << ',' << r.sampler << ',' << r.steps << ',' << r.seed << ',' << r.nfe << ','
      << r.unet_calls << ',' << flops << ',' << num(r.wall_ms) << ',' << num(r.rmse_latent) << ',' << num(r.rmse) << ','
      << num(r.psnr_db) << ',' << num(r.ssim) << ',' << r.rank << '\n';
  }
  return s.str();
}

std::string format_summary_md(const std::vector<SweepRow>& rows, const SweepReference& reference,
                              const std::string& model) {
  const std::vector<SweepSetting> settings = aggregate_settings(rows);
  std::ostringstream s;
  s << "# Sweep summary\n\n"
    << "Model `" << model << "`; reference: " << reference.describe() << ". "
    << "Each setting (sampler, steps) is averaged over prompts and seeds; PSNR (8-bit images, peak 1 on the "
       "[0, 1] scale) is computed from the mean squared error, wall time is sampling plus decoding.\n\n";
  std::string stochastic;
  for (const SweepRow& r : rows)
    if (r.stochastic && stochastic.find("`" + r.sampler + "`") == std::string::npos)
      stochastic += (stochastic.empty() ? "" : ", ") + ("`" + r.sampler + "`");
  if (!stochastic.empty())
    s << "Note: the stochastic samplers in this sweep (" << stochastic
      << ") add fresh noise at every step. They sample the model's distribution but not the reference's "
         "image, so their error against it does not fall towards zero with more steps; compare them by eye "
         "(grid) rather than by PSNR.\n\n";

  s << "## Pareto front (NFE against PSNR)\n\n"
    << "Settings that no other setting beats on both NFE (fewer or equal) and PSNR (higher or equal).\n\n"
    << "| sampler | steps | NFE | PSNR (dB) | SSIM | RMSE latent | wall (ms) |\n"
    << "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const SweepSetting& p : pareto_front(settings))
    s << "| " << p.sampler << " | " << p.steps << " | " << num(p.nfe) << " | " << db(p.psnr_db) << " | "
      << fixed4(p.ssim) << " | " << num(p.rmse_latent) << " | " << ms(p.wall_ms) << " |\n";

  s << "\n## Fewest steps within 1 dB of each sampler's best\n\n"
    << "| sampler | best PSNR (dB) | at steps | fewest steps within 1 dB | PSNR there (dB) |\n"
    << "| --- | ---: | ---: | ---: | ---: |\n";
  std::vector<std::string> order;
  for (const SweepSetting& p : settings)
    if (std::find(order.begin(), order.end(), p.sampler) == order.end()) order.push_back(p.sampler);
  for (const std::string& name : order) {
    const SweepSetting* best = nullptr;
    for (const SweepSetting& p : settings)
      if (p.sampler == name && (!best || p.psnr_db > best->psnr_db)) best = &p;
    const SweepSetting* fewest = nullptr;
    for (const SweepSetting& p : settings)
      if (p.sampler == name && p.psnr_db >= best->psnr_db - 1.0 && (!fewest || p.steps < fewest->steps)) fewest = &p;
    s << "| " << name << " | " << db(best->psnr_db) << " | " << best->steps << " | " << fewest->steps << " | "
      << db(fewest->psnr_db) << " |\n";
  }

  s << "\n## Cheapest setting with PSNR of at least 30 dB\n\n";
  // Chosen by NFE (ties: higher PSNR, then first seen), never by wall time.
  const SweepSetting* cheapest = nullptr;
  for (const SweepSetting& p : settings)
    if (p.psnr_db >= 30.0 &&
        (!cheapest || p.nfe < cheapest->nfe || (p.nfe == cheapest->nfe && p.psnr_db > cheapest->psnr_db)))
      cheapest = &p;
  if (cheapest)
    s << "`" << cheapest->sampler << "` at " << cheapest->steps << " steps: " << db(cheapest->psnr_db) << " dB, NFE "
      << num(cheapest->nfe) << ", " << ms(cheapest->wall_ms) << " ms.\n";
  else
    s << "None: no setting reached 30 dB against the reference. Try more steps.\n";
  return s.str();
}

}  // namespace fewstep
