// PNG parameters chunk, .npy and atomic writes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "pipeline/image_io.h"

namespace fs = std::filesystem;
using namespace fewstep;

namespace {

fs::path scratch(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("fewstep-io-" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d / name;
}

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

TEST(Png, ParametersRoundTripAscii) {
  at::Tensor img = at::randint(0, 256, {5, 7, 3}, at::kByte);
  const std::string text = "red apple\nNegative prompt: blurry\nSteps: 8, Sampler: ddim, CFG scale: 5, Seed: 42";
  fs::path p = scratch("a.png");
  write_file_atomic(p, encode_png(img, "parameters", text), true);
  auto got = read_png_text(p, "parameters");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, text);
  EXPECT_FALSE(read_png_text(p, "other").has_value());
}

TEST(Png, Utf8TextUsesItxtAndRoundTrips) {
  at::Tensor img = at::zeros({2, 2, 3}, at::kByte);
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
  at::Tensor img = at::randint(0, 256, {4, 4, 3}, at::kByte);
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

TEST(Npy, RoundTripFloat32) {
  at::Tensor t = at::randn({2, 3, 4, 5});
  fs::path p = scratch("t.npy");
  write_file_atomic(p, encode_npy(t), true);
  at::Tensor r = read_npy_float32(p);
  EXPECT_TRUE(at::equal(t, r));
}

TEST(Npy, RejectsFloat64WithDtypeInMessage) {
  fs::path p = scratch("d.npy");
  write_file_atomic(p, encode_npy(at::randn({2}, at::kDouble)), true);
  try {
    read_npy_float32(p);
    FAIL();
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("<f8"), std::string::npos) << e.what();
  }
}

TEST(AtomicWrite, NeverClobbersWithoutOverwrite) {
  fs::path p = scratch("keep.png");
  fs::remove(p);
  fs::remove(scratch("keep.1.png"));
  std::vector<uint8_t> first{1, 2, 3}, second{4, 5};
  EXPECT_EQ(write_file_atomic(p, first, false), p);
  fs::path second_path = write_file_atomic(p, second, false);
  EXPECT_EQ(second_path, scratch("keep.1.png"));
  EXPECT_EQ(read_bytes(p), first);
  EXPECT_EQ(read_bytes(second_path), second);
  EXPECT_EQ(write_file_atomic(p, second, true), p);
  EXPECT_EQ(read_bytes(p), second);
  // No temporary files are left behind.
  for (const auto& e : fs::directory_iterator(p.parent_path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

TEST(AtomicWrite, MissingFolderIsNamed) {
  try {
    write_file_atomic("/nonexistent-fewstep-dir/x.png", {1}, false);
    FAIL();
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-fewstep-dir/x.png"), std::string::npos);
  }
}

}  // namespace
