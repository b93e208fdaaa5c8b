// Picard-parallel sampling: ParaDiGMS (Shih, Belkhale, Ermon, Sadigh &
// Anari 2023, "Parallel Sampling of Diffusion Models", Algorithm 1).
//
// A sampler's steps x_{j+1} = rule_j(x_j) are solved as the fixed point of
//   x_{k} = x_b + Σ_{j=b}^{k-1} (rule_j(x_j) - x_j)        (Eq. 5, the cumulative sum)
// over a sliding window of P points: each round evaluates the denoiser at the
// window's P current guesses in ONE call, refreshes every guess by the
// cumulative sum, and slides the window past the first step whose refresh
// moved more than the tolerance. Two-step rules (DPM-Solver++(2M)) read the
// previous point's output from the same batch (or from the converged prefix).
// Across processes (PicardSplit, §4 of the paper) each process evaluates a
// share of the window and the outputs are gathered, so every process runs
// the same sums and the same test, and the rounds are those of one process.
#include "samplers/common.h"
#include "samplers/sample.h"

#include <algorithm>
#include <numeric>

namespace fewstep {
namespace {

// Step j's noise variance, the scale of its tolerance: the DDPM posterior
// variance of x_{j+1} given x_j and x0 (Ho et al. 2020 Eq. 7, written for any
// (α, σ) path as in Kingma et al. 2021 Eq. 32): σ_s²·σ²_{t|s}/σ_t², with
// σ²_{t|s} = σ_t² - (α_t/α_s)²·σ_s². Zero at a final point with sigma 0.
double step_variance(const Schedule& sc, int64_t j) {
  const double a_t = detail::alpha_at(sc, j), s_t = detail::sigma_at(sc, j);
  const double a_s = detail::alpha_at(sc, j + 1), s_s = detail::sigma_at(sc, j + 1);
  if (s_t <= 0) return 0.0;
  const double r = a_t / a_s;
  return std::max(s_s * s_s * (s_t * s_t - r * r * s_s * s_s) / (s_t * s_t), 0.0);
}

NoiseLevels window_levels(const Schedule& sc, int64_t begin, int64_t end, int64_t rows) {
  std::vector<at::Tensor> a, s, t;
  for (int64_t j = begin; j < end; ++j) {
    NoiseLevels l = detail::levels_at(sc, j, rows);
    a.push_back(l.alpha);
    s.push_back(l.sigma);
    t.push_back(l.timestep);
  }
  return {at::cat(a), at::cat(s), at::cat(t)};
}

/// The denoiser at the window's points begin..end-1 (`inputs`, one [rows,
/// ...] tensor each): in one call, or with `split` this process's share in
/// one call and the other shares gathered (x0 and eps travel together,
/// concatenated along dim 1).
DenoiserOutput evaluate_window(SamplerContext& ctx, const std::vector<at::Tensor>& inputs, int64_t begin, int64_t end,
                               int64_t rows, const PicardSplit* split) {
  const Schedule& sc = ctx.schedule;
  if (!split || split->world <= 1) return ctx.denoiser(at::cat(inputs), window_levels(sc, begin, end, rows));
  const int64_t len = end - begin, w = split->world;
  std::vector<int64_t> counts;
  int64_t first = 0, mine = 0;
  for (int64_t r = 0; r < w; ++r) {
    const int64_t n = len / w + (r < len % w ? 1 : 0);
    if (r == split->rank) first = std::accumulate(counts.begin(), counts.end(), int64_t{0}) / rows, mine = n;
    counts.push_back(n * rows);
  }
  const at::Tensor& x = inputs.front();
  at::Tensor local;
  if (mine > 0) {
    const std::vector<at::Tensor> share(inputs.begin() + first, inputs.begin() + first + mine);
    const DenoiserOutput out =
        ctx.denoiser(at::cat(share), window_levels(sc, begin + first, begin + first + mine, rows));
    local = at::cat({out.x0, out.eps}, 1);
  } else {
    std::vector<int64_t> shape = x.sizes().vec();
    shape[0] = 0;
    shape[1] *= 2;
    local = at::empty(shape, x.options());
  }
  const at::Tensor all = split->allgather_rows(local, counts);
  const int64_t c = x.size(1);
  return {all.narrow(1, 0, c), all.narrow(1, c, c)};
}

}  // namespace

at::Tensor picard_sample(const SamplerInfo& info, SamplerContext& ctx, at::Tensor x, const PicardOptions& picard,
                         SampleStats* stats, const PicardSplit* split) {
  if (!info.step_rule) throw SamplerError("sampler '" + info.name + "' has no Picard form");
  if (picard.window < 1 || !(picard.tol > 0)) throw SamplerError("picard: window must be >= 1 and tol > 0");
  const Schedule& sc = ctx.schedule;
  const int64_t n = sc.steps(), rows = x.size(0);
  const int64_t window = std::min(picard.window, n);
  const int64_t max_rounds = picard.max_rounds > 0 ? picard.max_rounds : n;
  // Noise for stochastic steps is drawn once, up front, in step order.
  if (ctx.noise && draws_step_noise(info, ctx.options)) ctx.noise->at_step(n - 1);

  std::vector<at::Tensor> xs(static_cast<size_t>(n + 1), x);  // xs[0] exact, the rest guesses
  // Whether xs[j] came from a cumulative sum (not the initial guess): a
  // refresh that moved little against a never-computed guess proves nothing,
  // so such a step counts as unconverged (without this, early high-noise
  // steps that barely move let the window slide on stale inputs).
  std::vector<bool> computed(static_cast<size_t>(n + 1), false);
  std::vector<DenoiserOutput> converged(static_cast<size_t>(n));
  int64_t begin = 0, rounds = 0, evaluated = 0;
  while (begin < n && rounds < max_rounds) {
    const int64_t end = std::min(begin + window, n), len = end - begin;
    std::vector<at::Tensor> inputs(xs.begin() + begin, xs.begin() + end);
    const DenoiserOutput all = evaluate_window(ctx, inputs, begin, end, rows, split);
    const auto x0s = all.x0.split(rows), epss = all.eps.split(rows);

    // Refresh every guess in the window by the cumulative sum of increments.
    std::vector<DenoiserOutput> outs(static_cast<size_t>(len));
    std::vector<at::Tensor> fresh(static_cast<size_t>(len));
    at::Tensor acc = xs[begin];
    for (int64_t k = 0; k < len; ++k) {
      const int64_t j = begin + k;
      outs[k] = {x0s[k], epss[k]};
      const DenoiserOutput* prev = j == 0 ? nullptr : (k == 0 ? &converged[j - 1] : &outs[k - 1]);
      const at::Tensor next = info.step_rule(StepInput{sc, j, xs[j], outs[k], prev, ctx.noise, ctx.options});
      acc = acc + (next - xs[j]);
      fresh[k] = acc;
    }
    // The first step whose guess moved more than tol·(its noise std), in mean square per sample.
    int64_t first_bad = len;
    for (int64_t k = 0; k < len && first_bad == len; ++k) {
      const double moved = (fresh[k] - xs[begin + k + 1]).pow(2).reshape({rows, -1}).mean(1).max().item<double>();
      if (!computed[begin + k + 1] || moved > picard.tol * picard.tol * step_variance(sc, begin + k)) first_bad = k;
    }
    for (int64_t k = 0; k < len; ++k) {
      xs[begin + k + 1] = fresh[k];
      computed[begin + k + 1] = true;
    }
    // Steps before first_bad had converged inputs, so the step at first_bad is exact too.
    const int64_t advance = std::min(first_bad + 1, len);
    for (int64_t k = 0; k < advance; ++k) converged[begin + k] = outs[k];
    begin += advance;
    ++rounds;
    evaluated += len;
    for (int64_t j = end + 1; j <= std::min(begin + window, n); ++j) xs[j] = xs[end];
    detail::report(ctx, begin - 1, xs[begin]);
  }
  if (stats) {
    stats->picard_rounds += rounds;
    stats->nfe += evaluated;
  }
  return xs[n];
}

}  // namespace fewstep
