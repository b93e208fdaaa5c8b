// Line plots (see plot.h).
#include "image/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

namespace fewstep {
namespace {

constexpr Rgb kInk{30, 30, 30}, kGrid{225, 225, 225};
constexpr int kLeft = 64, kRight = 16, kTop = 34, kBottom = 48;  // panel margins, px

bool usable(double v, bool log_axis) { return std::isfinite(v) && (!log_axis || v > 0); }

std::string format_tick(double v) {
  char buf[32];
  if (v != 0 && (std::abs(v) >= 1e5 || std::abs(v) < 1e-3))
    std::snprintf(buf, sizeof(buf), "%.0e", v);
  else
    std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

/// An axis range and its ticks, in data units.
struct Axis {
  bool log = false;
  double lo = 0, hi = 1;      ///< in axis units (log10 of data when log)
  std::vector<double> ticks;  ///< data values
  double to_axis(double v) const { return log ? std::log10(v) : v; }
};

Axis make_axis(double lo, double hi, bool log, double log_base) {
  Axis a;
  a.log = log;
  if (log) {
    const double lb = std::log10(log_base);
    double e0 = std::floor(std::log10(lo) / lb), e1 = std::ceil(std::log10(hi) / lb);
    if (e1 <= e0) e1 = e0 + 1;
    // Thin out ticks to at most 10.
    const double stride = std::max(1.0, std::ceil((e1 - e0) / 10.0));
    for (double e = e0; e <= e1 + 1e-9; e += stride) a.ticks.push_back(std::pow(log_base, e));
    a.lo = e0 * lb;
    a.hi = e1 * lb;
    return a;
  }
  if (hi - lo < 1e-12) {
    lo -= 1;
    hi += 1;
  }
  // "Nice" step: 1, 2 or 5 times a power of ten, about 6 ticks.
  const double raw = (hi - lo) / 6.0, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  a.lo = std::floor(lo / step) * step;
  a.hi = std::ceil(hi / step) * step;
  for (double t = a.lo; t <= a.hi + step * 1e-6; t += step) a.ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return a;
}

void draw_panel(Canvas& c, int ox, int oy, int w, int h, const PlotPanel& p) {
  const int px0 = ox + kLeft, py0 = oy + kTop, pw = w - kLeft - kRight, ph = h - kTop - kBottom;
  c.text(ox + (w - Canvas::text_width(p.title, 2)) / 2, oy + 6, p.title, kInk, 2);
  c.text(px0 + (pw - Canvas::text_width(p.x_label)) / 2, oy + h - 16, p.x_label, kInk);
  c.text(ox + 4, oy + kTop - 14, p.y_label, kInk);

  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  for (const PlotSeries& s : p.series) {
    if (s.x.size() != s.y.size())
      throw std::invalid_argument("draw_plot: series '" + s.label + "' has x and y of different lengths");
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!usable(s.x[i], p.log_x) || !usable(s.y[i], p.log_y)) continue;
      xlo = std::min(xlo, s.x[i]), xhi = std::max(xhi, s.x[i]);
      ylo = std::min(ylo, s.y[i]), yhi = std::max(yhi, s.y[i]);
    }
  }
  c.frame_rect(px0, py0, pw, ph, kInk);
  if (!(xlo <= xhi)) {
    c.text(px0 + pw / 2 - 20, py0 + ph / 2, "no data", kInk, 2);
    return;
  }
  const Axis ax = make_axis(xlo, xhi, p.log_x, 2.0), ay = make_axis(ylo, yhi, p.log_y, 10.0);
  auto sx = [&](double v) { return px0 + (ax.to_axis(v) - ax.lo) / (ax.hi - ax.lo) * (pw - 1); };
  auto sy = [&](double v) { return py0 + ph - 1 - (ay.to_axis(v) - ay.lo) / (ay.hi - ay.lo) * (ph - 1); };
  for (double t : ax.ticks) {
    const int x = static_cast<int>(std::lround(sx(t)));
    c.fill_rect(x, py0 + 1, 1, ph - 2, kGrid);
    c.fill_rect(x, py0 + ph, 1, 4, kInk);
    const std::string label = format_tick(t);
    c.text(x - Canvas::text_width(label) / 2, py0 + ph + 6, label, kInk);
  }
  for (double t : ay.ticks) {
    const int y = static_cast<int>(std::lround(sy(t)));
    c.fill_rect(px0 + 1, y, pw - 2, 1, kGrid);
    c.fill_rect(px0 - 4, y, 4, 1, kInk);
    const std::string label = format_tick(t);
    c.text(px0 - 6 - Canvas::text_width(label), y - 4, label, kInk);
  }
  c.frame_rect(px0, py0, pw, ph, kInk);
  for (size_t k = 0; k < p.series.size(); ++k) {
    const PlotSeries& s = p.series[k];
    const Rgb col = palette_color(k);
    bool have_prev = false;
    double x_prev = 0, y_prev = 0;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!usable(s.x[i], p.log_x) || !usable(s.y[i], p.log_y)) {
        have_prev = false;
        continue;
      }
      const double x = sx(s.x[i]), y = sy(s.y[i]);
      if (have_prev) c.line(x_prev, y_prev, x, y, col, 2);
      c.fill_rect(static_cast<int>(std::lround(x)) - 3, static_cast<int>(std::lround(y)) - 3, 7, 7, col);
      have_prev = true;
      x_prev = x, y_prev = y;
    }
  }
}

}  // namespace

Canvas draw_plot(const std::vector<PlotPanel>& panels, int panel_width, int panel_height) {
  if (panels.empty()) throw std::invalid_argument("draw_plot: no panels");
  const std::vector<PlotSeries>& legend = panels.front().series;
  const int legend_rows = static_cast<int>((legend.size() + 3) / 4);
  Canvas c(panel_width * static_cast<int>(panels.size()), panel_height + 8 + legend_rows * 18);
  for (size_t i = 0; i < panels.size(); ++i)
    draw_panel(c, static_cast<int>(i) * panel_width, 0, panel_width, panel_height, panels[i]);
  // Legend: four entries per row, a colour swatch and the label.
  const int col_w = c.width() / 4;
  for (size_t k = 0; k < legend.size(); ++k) {
    const int x = 8 + static_cast<int>(k % 4) * col_w;
    const int y = panel_height + 4 + static_cast<int>(k / 4) * 18;
    c.fill_rect(x, y + 4, 18, 4, palette_color(k));
    c.text(x + 24, y, legend[k].label, kInk);
  }
  return c;
}

}  // namespace fewstep
