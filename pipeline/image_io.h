// Image and array files: PNG with an SD-style `parameters` text chunk, .npy
// arrays, and atomic, never-clobbering output files.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace fewstep {

/// One-line error about an input or output file (names the path).
struct FileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Encodes an 8-bit image as PNG (stb_image_write) and inserts a text chunk
/// `keyword` = `text` right after IHDR: tEXt when the text is Latin-1-safe
/// ASCII, iTXt (UTF-8) otherwise, as PNG 1.2 §4.2.3 specifies.
/// rgb: [H, W, C] uint8 contiguous, C in {1, 3, 4}. Throws FileError on encoder failure.
std::vector<uint8_t> encode_png(const at::Tensor& rgb, const std::string& keyword, const std::string& text);

/// Reads the text chunk `keyword` (tEXt or uncompressed iTXt) from a PNG file.
/// Returns nullopt when absent. Throws FileError if the file is not a PNG.
std::optional<std::string> read_png_text(const std::filesystem::path& file, const std::string& keyword);

/// Writes bytes atomically: a temporary file beside `path`, then a rename.
/// Without `overwrite`, an existing `path` is never replaced: the bytes go to
/// the first free numbered name (`name.1.png`, `name.2.png`, ...; a dot, so
/// that it cannot be read as the `name-<seed>.png` of a batch), which is
/// returned. Throws FileError (naming the path) when the folder cannot be written.
std::filesystem::path write_file_atomic(const std::filesystem::path& path, const std::vector<uint8_t>& bytes,
                                        bool overwrite);

/// Checks up front that a file can be created in `path`'s folder (so a bad
/// --out fails before any work). Throws FileError.
void check_writable(const std::filesystem::path& path);

/// Serialises a float32/float64 tensor as NumPy .npy (format 1.0, C order, little-endian).
std::vector<uint8_t> encode_npy(const at::Tensor& t);

/// Reads a .npy file holding float32, C order. Throws FileError naming the
/// file on any other dtype, Fortran order, or a malformed header.
at::Tensor read_npy_float32(const std::filesystem::path& file);

}  // namespace fewstep
