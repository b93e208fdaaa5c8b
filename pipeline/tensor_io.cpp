// Tensor adapters (see tensor_io.h).
#include "pipeline/tensor_io.h"

#include <cstring>
#include <stdexcept>

#include "io/files.h"
#include "io/npy.h"

namespace fewstep {

Image to_rgb8(const at::Tensor& image) {
  if (image.dim() != 4 || image.size(0) != 1)
    throw std::invalid_argument("to_rgb8: need an image batch of one [1, C, H, W]");
  at::Tensor img = image[0].to(at::kFloat).cpu();
  if (img.size(0) < 3) img = img.narrow(0, 0, 1).expand({3, img.size(1), img.size(2)});
  img = img.narrow(0, 0, 3);
  const at::Tensor u8 =
      ((img.nan_to_num(0.0).clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(at::kByte).permute({1, 2, 0}).contiguous();
  Image out(static_cast<int>(u8.size(1)), static_cast<int>(u8.size(0)), 3);
  std::memcpy(out.pixels.data(), u8.data_ptr<uint8_t>(), out.pixels.size());
  return out;
}

std::vector<uint8_t> encode_npy(const at::Tensor& t_in) {
  at::Tensor t = t_in.contiguous().cpu();
  if (t.scalar_type() != at::kDouble) t = t.to(at::kFloat).contiguous();
  NpyArray a;
  a.descr = t.scalar_type() == at::kDouble ? "<f8" : "<f4";
  a.shape.assign(t.sizes().begin(), t.sizes().end());
  const auto* p = static_cast<const uint8_t*>(t.data_ptr());
  a.data.assign(p, p + t.numel() * t.element_size());
  return encode_npy(a);
}

at::Tensor read_npy_float32(const std::filesystem::path& file) {
  const std::string f = file.string();
  NpyArray a = parse_npy(read_file_bytes(file), f);
  if (a.descr != "<f4" && a.descr != "=f4") throw FileError(f + ": dtype is " + a.descr + ", expected float32 ('<f4')");
  at::Tensor t = at::empty(a.shape, at::kFloat);
  std::memcpy(t.data_ptr(), a.data.data(), a.data.size());
  return t;
}

at::Tensor decode_npy(const std::vector<uint8_t>& bytes, const std::string& where) {
  NpyArray a = parse_npy(bytes, where);
  at::ScalarType dtype;
  if (a.descr == "<f4" || a.descr == "=f4")
    dtype = at::kFloat;
  else if (a.descr == "<f8" || a.descr == "=f8")
    dtype = at::kDouble;
  else
    throw FileError(where + ": dtype is " + a.descr + ", expected float32 or float64");
  at::Tensor t = at::empty(a.shape, dtype);
  std::memcpy(t.data_ptr(), a.data.data(), a.data.size());
  return t;
}

}  // namespace fewstep
