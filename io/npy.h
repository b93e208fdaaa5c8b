// NumPy .npy arrays (format versions 1.0-3.0, C order, little-endian) as
// plain bytes and shapes. No torch: pipeline/tensor_io.h adapts to tensors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fewstep {

/// A parsed .npy array: `descr` is NumPy's dtype string ("<f4", "<f8", ...),
/// `data` the raw little-endian elements in C order (numel × itemsize bytes).
struct NpyArray {
  std::string descr;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
  int64_t numel() const;
};

/// Parses a .npy file's bytes (NEP 1 "A Simple File Format for NumPy
/// Arrays": magic, version, little-endian header length, a Python dict
/// literal with descr / fortran_order / shape, then the data). Only
/// fortran_order False is accepted, and the data must be exactly numel ×
/// itemsize bytes. `where` (usually the file name) starts every error.
/// Throws FileError ("<where>: ...") on anything malformed.
NpyArray parse_npy(const std::vector<uint8_t>& bytes, const std::string& where);

/// Serialises an array as a version 1.0 .npy (header padded to 64 bytes;
/// version 2.0 when the header would not fit 1.0's 65535-byte limit).
/// Throws std::invalid_argument when data.size() does not match the shape
/// and descr ("<f4" or "<f8").
std::vector<uint8_t> encode_npy(const NpyArray& array);

/// Bytes per element of a descr ("<f4" -> 4, "<f8" -> 8, "<i8" -> 8, ...);
/// 0 when unknown.
int64_t npy_itemsize(const std::string& descr);

}  // namespace fewstep
