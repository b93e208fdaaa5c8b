// Contact sheet drawing (see contact_sheet.h).
#include "image/contact_sheet.h"

#include <algorithm>
#include <stdexcept>

namespace fewstep {

ContactSheetLayout contact_sheet_layout(const std::vector<std::string>& row_labels,
                                        const std::vector<std::string>& col_labels, int tile_width, int tile_height,
                                        const std::string& title) {
  using L = ContactSheetLayout;
  if (row_labels.empty() || col_labels.empty()) throw std::invalid_argument("contact sheet: no rows or no columns");
  if (tile_width < 1 || tile_height < 1) throw std::invalid_argument("contact sheet: tile size must be at least 1x1");
  L l;
  l.rows = static_cast<int>(row_labels.size());
  l.cols = static_cast<int>(col_labels.size());
  const int big = std::max(tile_width, tile_height);
  l.scale = std::max(1, (L::kMinTile + big - 1) / big);
  l.cell_width = tile_width * l.scale;
  l.cell_height = tile_height * l.scale;
  int label_w = 0;
  for (const auto& s : row_labels) label_w = std::max(label_w, Canvas::text_width(s, L::kLabelScale));
  l.left = label_w + 2 * L::kGap;
  l.top = (title.empty() ? 0 : 12 * L::kLabelScale + L::kGap) + 12 * L::kLabelScale + L::kGap;
  l.width = l.left + l.cols * (l.cell_width + L::kGap);
  l.height = l.top + l.rows * (l.cell_height + L::kGap);
  return l;
}

Canvas draw_contact_sheet(const std::vector<std::string>& row_labels, const std::vector<std::string>& col_labels,
                          const std::vector<Image>& tiles, int tile_width, int tile_height, const std::string& title) {
  using L = ContactSheetLayout;
  const L l = contact_sheet_layout(row_labels, col_labels, tile_width, tile_height, title);
  if (tiles.size() != size_t(l.rows) * size_t(l.cols))
    throw std::invalid_argument("contact sheet: expected " + std::to_string(l.rows * l.cols) + " tiles, got " +
                                std::to_string(tiles.size()));
  const Rgb ink{30, 30, 30}, frame{200, 200, 200};
  Canvas c(l.width, l.height);
  const int label_h = 12 * L::kLabelScale;
  if (!title.empty()) c.text(L::kGap, L::kGap / 2, title, ink, L::kLabelScale);
  const int col_label_y = l.top - L::kGap - label_h + 4;
  for (int j = 0; j < l.cols; ++j) {
    const auto& s = col_labels[size_t(j)];
    const int w = Canvas::text_width(s, L::kLabelScale);
    c.text(l.cell_x(j) + std::max(0, (l.cell_width - w) / 2), col_label_y, s, ink, L::kLabelScale);
  }
  for (int i = 0; i < l.rows; ++i) {
    c.text(L::kGap, l.cell_y(i) + (l.cell_height - label_h) / 2 + 4, row_labels[size_t(i)], ink, L::kLabelScale);
    for (int j = 0; j < l.cols; ++j) {
      const Image& t = tiles[size_t(i) * size_t(l.cols) + size_t(j)];
      if (t.empty()) {
        c.frame_rect(l.cell_x(j), l.cell_y(i), l.cell_width, l.cell_height, frame);
        continue;
      }
      if (t.width != tile_width || t.height != tile_height || !t.consistent())
        throw std::invalid_argument("contact sheet: tile " + std::to_string(i) + "," + std::to_string(j) + " is not " +
                                    std::to_string(tile_width) + "x" + std::to_string(tile_height) + " pixels");
      c.blit(l.cell_x(j), l.cell_y(i), t, l.scale);
    }
  }
  return c;
}

}  // namespace fewstep
