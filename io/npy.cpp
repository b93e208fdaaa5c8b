// .npy parsing and writing (see npy.h).
#include "io/npy.h"

#include <cstring>
#include <limits>
#include <stdexcept>

#include "io/files.h"
#include "common/parse.h"

namespace fewstep {
namespace {

/// The value text of `'key': value` in a header dict literal ("" when absent).
std::string header_value(const std::string& header, const std::string& key) {
  const std::string quoted = "'" + key + "'";
  const size_t k = header.find(quoted);
  if (k == std::string::npos) return "";
  size_t p = header.find(':', k + quoted.size());
  if (p == std::string::npos) return "";
  ++p;
  while (p < header.size() && (header[p] == ' ' || header[p] == '\t')) ++p;
  if (p >= header.size()) return "";
  if (header[p] == '\'') {
    const size_t e = header.find('\'', p + 1);
    return e == std::string::npos ? "" : header.substr(p, e - p + 1);
  }
  if (header[p] == '(') {
    const size_t e = header.find(')', p);
    return e == std::string::npos ? "" : header.substr(p, e - p + 1);
  }
  size_t e = p;
  while (e < header.size() && header[e] != ',' && header[e] != '}') ++e;
  return trim(header.substr(p, e - p));
}

}  // namespace

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t npy_itemsize(const std::string& descr) {
  if (descr.size() < 3 || (descr[0] != '<' && descr[0] != '=' && descr[0] != '|')) return 0;
  const auto size = parse_integer(descr.substr(2));
  if (!size || *size < 1 || *size > 16) return 0;
  return *size;
}

NpyArray parse_npy(const std::vector<uint8_t>& b, const std::string& f) {
  if (b.size() < 10 || b[0] != 0x93 || std::memcmp(&b[1], "NUMPY", 5) != 0) throw FileError(f + ": not a .npy file");
  size_t hlen = 0, hstart = 0;
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
  if (hlen > b.size() - hstart) throw FileError(f + ": truncated .npy header");
  const std::string header(reinterpret_cast<const char*>(&b[hstart]), hlen);

  NpyArray a;
  const std::string descr = header_value(header, "descr");
  if (descr.size() < 2 || descr.front() != '\'') throw FileError(f + ": .npy header has no descr");
  a.descr = descr.substr(1, descr.size() - 2);
  const int64_t itemsize = npy_itemsize(a.descr);
  if (itemsize == 0) throw FileError(f + ": unsupported dtype '" + a.descr + "'");
  const std::string order = header_value(header, "fortran_order");
  if (order == "True") throw FileError(f + ": Fortran order is not supported, save with C order");
  if (order != "False") throw FileError(f + ": .npy header has no fortran_order");
  const std::string shape = header_value(header, "shape");
  if (shape.size() < 2 || shape.front() != '(') throw FileError(f + ": .npy header has no shape");
  int64_t numel = 1;
  for (const std::string& dim : split_list(shape.substr(1, shape.size() - 2), ',')) {
    if (dim.empty()) continue;  // "(3,)" has a trailing comma
    const auto d = parse_integer(dim);
    if (!d || *d < 0) throw FileError(f + ": bad shape in .npy header");
    if (*d > 0 && numel > std::numeric_limits<int64_t>::max() / itemsize / *d)
      throw FileError(f + ": .npy shape is too large");
    numel *= *d;
    a.shape.push_back(*d);
  }
  const size_t data_start = hstart + hlen;
  if (b.size() - data_start != static_cast<size_t>(numel * itemsize))
    throw FileError(f + ": data size does not match its shape");
  a.data.assign(b.begin() + static_cast<std::ptrdiff_t>(data_start), b.end());
  return a;
}

std::vector<uint8_t> encode_npy(const NpyArray& a) {
  const int64_t itemsize = npy_itemsize(a.descr);
  if (itemsize == 0 || a.data.size() != static_cast<size_t>(a.numel() * itemsize))
    throw std::invalid_argument("encode_npy: data does not match the shape and descr");
  std::string shape;
  for (int64_t d : a.shape) shape += std::to_string(d) + ", ";
  if (a.shape.size() > 1) shape.erase(shape.size() - 2);
  std::string header = "{'descr': '" + a.descr + "', 'fortran_order': False, 'shape': (" + shape + "), }";
  // Magic (6) + version (2) + header length (2, or 4 in version 2.0) + header
  // + '\n' must be a multiple of 64. Version 1.0's length field holds at most
  // 65535; longer headers (shapes of thousands of dimensions) need 2.0, as
  // NumPy writes them.
  const bool v2 = header.size() + 64 > 65535;  // padding adds at most 63 bytes and the newline
  const size_t prefix = v2 ? 12 : 10;
  header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(v2 ? 2 : 1), 0};
  for (size_t byte = 0; byte < prefix - 8; ++byte) out.push_back(static_cast<uint8_t>(header.size() >> (8 * byte)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), a.data.begin(), a.data.end());
  return out;
}

}  // namespace fewstep
