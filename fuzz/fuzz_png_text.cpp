// libFuzzer target: the PNG `parameters` reader of `fewstep info --image`
// (image/png.h png_text) on arbitrary bytes. Inputs that start with '1'
// instead take the rest as the text of a `parameters` chunk: encode_png must
// write it so that png_text reads back exactly the same bytes.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "image/png.h"
#include "io/files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 0 && data[0] == '1') {
    const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    const fewstep::Image image(2, 1, 3, 128);
    const auto back = fewstep::png_text(fewstep::encode_png(image, "parameters", text), "parameters", "round-trip");
    if (!back || *back != text) std::abort();
    return 0;
  }
  try {
    const auto text = fewstep::png_text(std::vector<uint8_t>(data, data + size), "parameters", "fuzz.png");
    if (text && text->size() > size) std::abort();  // a chunk's text lies inside the file
  } catch (const fewstep::FileError&) {
  }
  return 0;
}
