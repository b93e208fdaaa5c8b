// PNG files with an SD-style `parameters` text chunk (stb_image_write for
// the pixels; the text chunk spliced in after IHDR). No torch.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "image/image.h"

namespace fewstep {

/// Encodes an image as PNG and inserts a text chunk `keyword` = `text`
/// right after IHDR: tEXt when the text is ASCII, iTXt (UTF-8) otherwise, as
/// PNG 1.2 §4.2.3 specifies. Throws FileError on an inconsistent image or an
/// encoder failure.
std::vector<uint8_t> encode_png(const Image& image, const std::string& keyword, const std::string& text);

/// The text chunk `keyword` (tEXt, or uncompressed iTXt) of a PNG file's
/// bytes; nullopt when absent. Chunks are walked by their lengths (PNG 1.2
/// §5.3); CRCs are not checked. `where` starts errors. Throws FileError
/// ("<where>: not a PNG file" / "truncated PNG chunk").
std::optional<std::string> png_text(const std::vector<uint8_t>& bytes, const std::string& keyword,
                                    const std::string& where);

/// png_text of a file. Throws FileError naming the file.
std::optional<std::string> read_png_text(const std::filesystem::path& file, const std::string& keyword);

}  // namespace fewstep
