// PNG writing and text-chunk reading (see png.h).
#include "image/png.h"

#include <zlib.h>

#include <cstring>

#include "io/files.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb_image_write.h>

namespace fewstep {
namespace {

void set_be32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

uint32_t get_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

const uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

void append_to_vector(void* ctx, void* data, int size) {
  auto* v = static_cast<std::vector<uint8_t>*>(ctx);
  auto* p = static_cast<uint8_t*>(data);
  v->insert(v->end(), p, p + size);
}

std::vector<uint8_t> text_chunk(const std::string& keyword, const std::string& text) {
  bool ascii = true;
  for (unsigned char c : text) ascii &= c < 0x80;
  const char* type = ascii ? "tEXt" : "iTXt";
  std::string data = keyword;
  data.push_back('\0');
  if (!ascii) data.append(4, '\0');  // compression flag, method, empty language tag, empty translated keyword
  data += text;
  // length (4) + type (4) + data + CRC (4), the CRC covering type and data.
  std::vector<uint8_t> chunk(12 + data.size());
  set_be32(chunk.data(), static_cast<uint32_t>(data.size()));
  std::memcpy(chunk.data() + 4, type, 4);
  std::memcpy(chunk.data() + 8, data.data(), data.size());
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, chunk.data() + 4, static_cast<uInt>(4 + data.size()));
  set_be32(chunk.data() + 8 + data.size(), static_cast<uint32_t>(crc));
  return chunk;
}

}  // namespace

std::vector<uint8_t> encode_png(const Image& img, const std::string& keyword, const std::string& text) {
  if (img.empty() || !img.consistent()) throw FileError("PNG encoder: the image is empty or inconsistent");
  std::vector<uint8_t> png;
  if (!stbi_write_png_to_func(append_to_vector, &png, img.width, img.height, img.channels, img.pixels.data(),
                              img.width * img.channels) ||
      png.size() < 33)
    throw FileError("PNG encoder failed");
  // The IHDR chunk is first: 8 signature + 4 length + 4 type + 13 data + 4 CRC = 33 bytes.
  const std::vector<uint8_t> chunk = text_chunk(keyword, text);
  png.insert(png.begin() + 33, chunk.begin(), chunk.end());
  return png;
}

std::optional<std::string> png_text(const std::vector<uint8_t>& b, const std::string& keyword,
                                    const std::string& where) {
  if (b.size() < 8 || std::memcmp(b.data(), kPngSignature, 8) != 0) throw FileError(where + ": not a PNG file");
  size_t pos = 8;
  while (b.size() - pos >= 12) {
    const uint32_t len = get_be32(&b[pos]);
    if (len > b.size() - pos - 12) throw FileError(where + ": truncated PNG chunk");
    const std::string type(reinterpret_cast<const char*>(&b[pos + 4]), 4);
    const std::string data(reinterpret_cast<const char*>(&b[pos + 8]), len);
    pos += 12 + size_t(len);
    if (type == "IEND") break;
    if (type != "tEXt" && type != "iTXt") continue;
    const size_t nul = data.find('\0');
    if (nul == std::string::npos || data.compare(0, nul, keyword) != 0) continue;
    if (type == "tEXt") return data.substr(nul + 1);
    // iTXt: keyword\0 flag method lang\0 translated\0 text
    if (nul + 3 > data.size() || data[nul + 1] != 0) continue;  // compressed iTXt is not written by us
    const size_t lang_end = data.find('\0', nul + 3);
    if (lang_end == std::string::npos) continue;
    const size_t trans_end = data.find('\0', lang_end + 1);
    if (trans_end == std::string::npos) continue;
    return data.substr(trans_end + 1);
  }
  return std::nullopt;
}

std::optional<std::string> read_png_text(const std::filesystem::path& file, const std::string& keyword) {
  return png_text(read_file_bytes(file), keyword, file.string());
}

}  // namespace fewstep
