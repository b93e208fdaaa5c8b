// Line plots drawn on a Canvas (no plotting library): one panel per
// quantity, one line per series, log or linear axes, a legend.
#pragma once

#include <string>
#include <vector>

#include "image/canvas.h"

namespace fewstep {

/// One line: points (x[i], y[i]); non-finite points, and non-positive ones
/// on a log axis, are skipped (the line breaks there).
struct PlotSeries {
  std::string label;
  std::vector<double> x, y;
};

/// One panel's axes.
struct PlotPanel {
  std::string title, x_label, y_label;
  bool log_x = false;  ///< ticks at powers of 2
  bool log_y = false;  ///< ticks at powers of 10
  std::vector<PlotSeries> series;
};

/// Draws the panels side by side, each panel_width × panel_height pixels,
/// with a shared legend (series labels and colours of the first panel)
/// below them. Series i has palette_color(i) in every panel. Panels with no
/// drawable point show "no data". Throws std::invalid_argument when panels
/// is empty or a series' x and y differ in length.
Canvas draw_plot(const std::vector<PlotPanel>& panels, int panel_width = 480, int panel_height = 360);

}  // namespace fewstep
