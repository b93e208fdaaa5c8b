// PNG text chunks, .npy and atomic writes (see image_io.h).
#include "pipeline/image_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

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

std::vector<uint8_t> read_all(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw FileError(file.string() + ": cannot open");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

std::vector<uint8_t> encode_png(const at::Tensor& rgb, const std::string& keyword, const std::string& text) {
  TORCH_CHECK(rgb.dim() == 3 && rgb.scalar_type() == at::kByte, "encode_png: need [H, W, C] uint8");
  at::Tensor img = rgb.contiguous();
  const int h = static_cast<int>(img.size(0)), w = static_cast<int>(img.size(1)), c = static_cast<int>(img.size(2));
  std::vector<uint8_t> png;
  if (!stbi_write_png_to_func(append_to_vector, &png, w, h, c, img.data_ptr<uint8_t>(), w * c) || png.size() < 33)
    throw FileError("PNG encoder failed");
  // The IHDR chunk is first: 8 signature + 4 length + 4 type + 13 data + 4 CRC = 33 bytes.
  std::vector<uint8_t> chunk = text_chunk(keyword, text);
  png.insert(png.begin() + 33, chunk.begin(), chunk.end());
  return png;
}

std::optional<std::string> read_png_text(const std::filesystem::path& file, const std::string& keyword) {
  std::vector<uint8_t> b = read_all(file);
  if (b.size() < 8 || std::memcmp(b.data(), kPngSignature, 8) != 0) throw FileError(file.string() + ": not a PNG file");
  size_t pos = 8;
  while (pos + 12 <= b.size()) {
    uint32_t len = get_be32(&b[pos]);
    if (pos + 12 + len > b.size()) throw FileError(file.string() + ": truncated PNG chunk");
    std::string type(reinterpret_cast<const char*>(&b[pos + 4]), 4);
    std::string data(reinterpret_cast<const char*>(&b[pos + 8]), len);
    pos += 12 + len;
    if (type == "IEND") break;
    if (type != "tEXt" && type != "iTXt") continue;
    size_t nul = data.find('\0');
    if (nul == std::string::npos || data.substr(0, nul) != keyword) continue;
    if (type == "tEXt") return data.substr(nul + 1);
    // iTXt: keyword\0 flag method lang\0 translated\0 text
    if (nul + 3 > data.size() || data[nul + 1] != 0) continue;  // compressed iTXt is not written by us
    size_t lang_end = data.find('\0', nul + 3);
    if (lang_end == std::string::npos) continue;
    size_t trans_end = data.find('\0', lang_end + 1);
    if (trans_end == std::string::npos) continue;
    return data.substr(trans_end + 1);
  }
  return std::nullopt;
}

void check_writable(const std::filesystem::path& path) {
  std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) throw FileError(path.string() + ": folder does not exist");
  if (std::filesystem::is_directory(path, ec)) throw FileError(path.string() + ": is a folder, expected a file name");
  if (access(dir.c_str(), W_OK) != 0) throw FileError(path.string() + ": folder is not writable");
}

std::filesystem::path write_file_atomic(const std::filesystem::path& path, const std::vector<uint8_t>& bytes,
                                        bool overwrite) {
  check_writable(path);
  std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  std::string tmp_name = ".";  // built in steps: GCC 12 warns falsely (-Wrestrict) on "." + string
  tmp_name += path.filename().string();
  tmp_name += ".tmp-XXXXXX";
  std::string tmpl = (dir / tmp_name).string();
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  int fd = mkstemp(name.data());
  if (fd < 0) throw FileError(path.string() + ": cannot create a temporary file: " + std::strerror(errno));
  std::filesystem::path tmp(name.data());
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      ::close(fd);
      ::unlink(tmp.c_str());
      throw FileError(path.string() + ": write failed: " + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  fchmod(fd, 0644);
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw FileError(path.string() + ": write failed: " + std::strerror(errno));
  }
  if (overwrite) {
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
      ::unlink(tmp.c_str());
      throw FileError(path.string() + ": cannot rename into place: " + std::strerror(errno));
    }
    return path;
  }
  // link() never replaces an existing file, so a concurrent writer cannot be clobbered either.
  std::filesystem::path target = path;
  for (int k = 1; k < 10000; ++k) {
    if (::link(tmp.c_str(), target.c_str()) == 0) {
      ::unlink(tmp.c_str());
      return target;
    }
    if (errno != EEXIST) {
      ::unlink(tmp.c_str());
      throw FileError(target.string() + ": cannot write: " + std::strerror(errno));
    }
    target = dir / (path.stem().string() + "." + std::to_string(k) + path.extension().string());
  }
  ::unlink(tmp.c_str());
  throw FileError(path.string() + ": no free numbered name");
}

std::vector<uint8_t> encode_npy(const at::Tensor& t_in) {
  at::Tensor t = t_in.contiguous().cpu();
  const char* descr = t.scalar_type() == at::kDouble ? "<f8" : "<f4";
  if (t.scalar_type() != at::kDouble) t = t.to(at::kFloat);
  std::string shape;
  for (int64_t i = 0; i < t.dim(); ++i) shape += std::to_string(t.size(i)) + ", ";
  if (t.dim() > 1) shape.erase(shape.size() - 2);
  std::string header = "{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': (" + shape + "), }";
  // Magic (6) + version (2) + header length (2) + header + '\n' must be a multiple of 64.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.push_back(static_cast<uint8_t>(header.size() & 0xff));
  out.push_back(static_cast<uint8_t>(header.size() >> 8));
  out.insert(out.end(), header.begin(), header.end());
  const auto* p = static_cast<const uint8_t*>(t.data_ptr());
  out.insert(out.end(), p, p + t.numel() * t.element_size());
  return out;
}

at::Tensor read_npy_float32(const std::filesystem::path& file) {
  std::vector<uint8_t> b = read_all(file);
  const std::string f = file.string();
  if (b.size() < 10 || b[0] != 0x93 || std::memcmp(&b[1], "NUMPY", 5) != 0) throw FileError(f + ": not a .npy file");
  size_t hlen, hstart;
  if (b[6] == 1) {
    hlen = b[8] | (size_t(b[9]) << 8);
    hstart = 10;
  } else if (b[6] == 2 || b[6] == 3) {
    if (b.size() < 12) throw FileError(f + ": truncated .npy header");
    hlen = b[8] | (size_t(b[9]) << 8) | (size_t(b[10]) << 16) | (size_t(b[11]) << 24);
    hstart = 12;
  } else {
    throw FileError(f + ": unsupported .npy version " + std::to_string(b[6]));
  }
  if (hstart + hlen > b.size()) throw FileError(f + ": truncated .npy header");
  std::string header(reinterpret_cast<const char*>(&b[hstart]), hlen);
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr'\\s*:\\s*'([^']*)'")))
    throw FileError(f + ": .npy header has no descr");
  if (m[1] != "<f4" && m[1] != "=f4")
    throw FileError(f + ": dtype is " + std::string(m[1]) + ", expected float32 ('<f4')");
  if (std::regex_search(header, std::regex("'fortran_order'\\s*:\\s*True")))
    throw FileError(f + ": Fortran order is not supported, save with C order");
  if (!std::regex_search(header, m, std::regex("'shape'\\s*:\\s*\\(([^)]*)\\)")))
    throw FileError(f + ": .npy header has no shape");
  std::vector<int64_t> shape;
  std::string dims = m[1];
  std::stringstream ss(dims);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    tok.erase(0, tok.find_first_not_of(" \t"));
    tok.erase(tok.find_last_not_of(" \t") + 1);
    if (tok.empty()) continue;
    try {
      shape.push_back(std::stoll(tok));
    } catch (const std::exception&) {
      throw FileError(f + ": bad shape in .npy header");
    }
  }
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const size_t data_start = hstart + hlen;
  if (b.size() - data_start != static_cast<size_t>(numel) * 4)
    throw FileError(f + ": data size does not match its shape");
  at::Tensor t = at::empty(shape, at::kFloat);
  std::memcpy(t.data_ptr(), &b[data_start], static_cast<size_t>(numel) * 4);
  return t;
}

}  // namespace fewstep
