// PNG with the `parameters` text chunk.
#include <gtest/gtest.h>

#include "tests/test_env.h"
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "image/png.h"
#include "io/files.h"

namespace fs = std::filesystem;
using namespace fewstep;

namespace {

using fewstep::test::scratch;

Image noise_image(int w, int h) {
  Image img(w, h, 3);
  uint32_t state = 7;
  for (auto& v : img.pixels) v = static_cast<uint8_t>((state = state * 1664525u + 1013904223u) >> 24);
  return img;
}

TEST(Png, ParametersRoundTripAscii) {
  Image img = noise_image(7, 5);
  const std::string text = "red apple\nNegative prompt: blurry\nSteps: 8, Sampler: ddim, CFG scale: 5, Seed: 42";
  fs::path p = scratch("a.png");
  write_file_atomic(p, encode_png(img, "parameters", text), true);
  auto got = read_png_text(p, "parameters");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, text);
  EXPECT_FALSE(read_png_text(p, "other").has_value());
}

TEST(Png, Utf8TextUsesItxtAndRoundTrips) {
  Image img(2, 2, 3);
  const std::string text = "café 🍎\nSteps: 1";
  fs::path p = scratch("u.png");
  auto bytes = encode_png(img, "parameters", text);
  std::string s(bytes.begin(), bytes.end());
  EXPECT_NE(s.find("iTXt"), std::string::npos);
  write_file_atomic(p, bytes, true);
  EXPECT_EQ(read_png_text(p, "parameters").value_or(""), text);
}

TEST(Png, PixelsSurviveTheSplice) {
  // The spliced chunk must leave a valid PNG: its IDAT still decodes (checked by
  // comparing with stb's own encoding without the chunk: same bytes after the insert).
  Image img = noise_image(4, 4);
  auto a = encode_png(img, "parameters", "x");
  auto b = encode_png(img, "parameters", "xyz");
  ASSERT_EQ(b.size(), a.size() + 2);
  // Everything after the text chunk is identical.
  EXPECT_TRUE(std::equal(a.end() - 40, a.end(), b.end() - 40));
}

TEST(Png, NotAPngIsNamed) {
  fs::path p = scratch("n.png");
  std::ofstream(p) << "hello";
  try {
    read_png_text(p, "parameters");
    FAIL();
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("not a PNG"), std::string::npos);
  }
}

// A chunk length running past the end is reported, not read past.
TEST(Png, TruncatedChunkIsNamed) {
  std::vector<uint8_t> bytes = encode_png(Image(2, 2, 3), "parameters", "abc");
  // Signature (8) + IHDR (25), then 20 bytes of the 26-byte text chunk.
  bytes.resize(53);
  EXPECT_THROW(png_text(bytes, "parameters", "mem"), FileError);
}

}  // namespace
