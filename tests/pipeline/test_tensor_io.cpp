// Tensor adapters: model outputs to images, tensors to and from .npy.
#include <gtest/gtest.h>

#include "tests/test_env.h"
#include <unistd.h>

#include <filesystem>

#include "io/files.h"
#include "pipeline/tensor_io.h"

namespace fs = std::filesystem;
using namespace fewstep;

namespace {

using fewstep::test::scratch;

TEST(TensorIo, Rgb8MapsMinusOneToZeroAndOneTo255) {
  at::Tensor img = at::full({1, 3, 1, 2}, -1.0);
  img.index_put_({0, at::indexing::Slice(), 0, 1}, 1.0);
  img.index_put_({0, 1, 0, 0}, 0.0);  // (0 + 1) · 127.5 = 127.5 rounds half to even: 128
  const Image u8 = to_rgb8(img);
  ASSERT_EQ(u8.width, 2);
  EXPECT_EQ(u8.pixels[0], 0);
  EXPECT_EQ(u8.pixels[1], 128);
  EXPECT_EQ(u8.pixels[5], 255);
}

TEST(TensorIo, NpyRoundTripFloat32) {
  at::Tensor t = at::randn({2, 3, 4, 5});
  fs::path p = scratch("t.npy");
  write_file_atomic(p, encode_npy(t), true);
  EXPECT_TRUE(at::equal(t, read_npy_float32(p)));
}

TEST(TensorIo, RejectsFloat64WithDtypeInMessage) {
  fs::path p = scratch("d.npy");
  write_file_atomic(p, encode_npy(at::randn({2}, at::kDouble)), true);
  try {
    read_npy_float32(p);
    FAIL();
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("<f8"), std::string::npos) << e.what();
  }
}

}  // namespace
