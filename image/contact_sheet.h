// The sweep's contact sheet: a grid of images with drawn row and column
// labels (rows: samplers; columns: step counts, then the reference).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "image/canvas.h"

namespace fewstep {

/// Where everything goes. All sizes in pixels:
///   scale  = max(1, ceil(kMinTile / max(tile_width, tile_height))), kMinTile = 96
///   cell   = tile × scale;  gap = 8;  label_scale = 2 (stb_easy_font glyphs doubled)
///   left   = widest row label at label_scale + 2·gap
///   top    = (title ? title line + gap : 0) + column-label line (12·label_scale) + gap
///   width  = left + cols·(cell_w + gap)
///   height = top + rows·(cell_h + gap)
/// Cell (r, c) has its top-left at (left + c·(cell_w + gap), top + r·(cell_h + gap)).
struct ContactSheetLayout {
  static constexpr int kMinTile = 96, kGap = 8, kLabelScale = 2;
  int rows = 0, cols = 0, scale = 1, cell_width = 0, cell_height = 0;
  int left = 0, top = 0, width = 0, height = 0;
  int cell_x(int c) const { return left + c * (cell_width + kGap); }
  int cell_y(int r) const { return top + r * (cell_height + kGap); }
};

/// Computes the layout for row_labels.size() rows and col_labels.size()
/// columns of tile_width × tile_height images. Throws std::invalid_argument
/// for no rows, no columns or a tile size below 1.
ContactSheetLayout contact_sheet_layout(const std::vector<std::string>& row_labels,
                                        const std::vector<std::string>& col_labels, int tile_width, int tile_height,
                                        const std::string& title);

/// Draws the sheet. tiles: rows × cols images in row-major order, each
/// tile_width × tile_height or empty (drawn as a blank cell with a frame).
/// Throws std::invalid_argument on a tile count or size mismatch.
Canvas draw_contact_sheet(const std::vector<std::string>& row_labels, const std::vector<std::string>& col_labels,
                          const std::vector<Image>& tiles, int tile_width, int tile_height, const std::string& title);

}  // namespace fewstep
