// .npy parsing and writing, atomic writes, the text-value parsers.
#include <gtest/gtest.h>

#include "tests/test_env.h"
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/parse.h"
#include "io/files.h"
#include "io/npy.h"

namespace fs = std::filesystem;
using namespace fewstep;

namespace {

using fewstep::test::scratch;

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

NpyArray float32_array(std::vector<int64_t> shape, std::vector<float> values) {
  NpyArray a;
  a.descr = "<f4";
  a.shape = std::move(shape);
  a.data.resize(values.size() * 4);
  std::memcpy(a.data.data(), values.data(), a.data.size());
  return a;
}

// The header is padded so that the data starts at a multiple of 64 bytes
// (NEP 1), and parsing gives back the array.
TEST(Npy, RoundTripAndAlignment) {
  const NpyArray a = float32_array({2, 3}, {1, 2, 3, 4, 5, -6.5f});
  const std::vector<uint8_t> bytes = encode_npy(a);
  EXPECT_EQ((bytes.size() - a.data.size()) % 64, 0u);
  const NpyArray b = parse_npy(bytes, "mem");
  EXPECT_EQ(b.descr, "<f4");
  EXPECT_EQ(b.shape, a.shape);
  EXPECT_EQ(b.data, a.data);
  // A one-dimensional shape keeps its trailing comma: "(3,)".
  const std::vector<uint8_t> one = encode_npy(float32_array({3}, {1, 2, 3}));
  EXPECT_NE(std::string(one.begin(), one.end()).find("'shape': (3, )"), std::string::npos);
  EXPECT_EQ(parse_npy(one, "mem").shape, (std::vector<int64_t>{3}));
}

// A header over version 1.0's 65535 bytes (here 40,000 dimensions) is
// written as version 2.0, with a 4-byte length, and reads back.
TEST(Npy, LongHeaderIsVersion2) {
  const NpyArray a = float32_array(std::vector<int64_t>(40000, 1), {2.5f});
  const std::vector<uint8_t> bytes = encode_npy(a);
  ASSERT_GT(bytes.size(), 65536u);
  EXPECT_EQ(bytes[6], 2);
  EXPECT_EQ((bytes.size() - a.data.size()) % 64, 0u);
  const NpyArray b = parse_npy(bytes, "mem");
  EXPECT_EQ(b.shape, a.shape);
  EXPECT_EQ(b.data, a.data);
  EXPECT_EQ(encode_npy(float32_array({2}, {1, 2}))[6], 1);
}

TEST(Npy, MalformedInputIsNamed) {
  std::vector<uint8_t> bytes = encode_npy(float32_array({2}, {1, 2}));
  bytes.pop_back();
  EXPECT_THROW(parse_npy(bytes, "x.npy"), FileError);
  EXPECT_THROW(parse_npy({'h', 'i'}, "x.npy"), FileError);
  std::string fortran(bytes.begin(), bytes.end());
  fortran.replace(fortran.find("False"), 5, "True ");
  try {
    parse_npy(std::vector<uint8_t>(fortran.begin(), fortran.end()), "x.npy");
    FAIL();
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("x.npy: Fortran order"), std::string::npos) << e.what();
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

TEST(Parse, IntegersRealsBoolsAndLists) {
  EXPECT_EQ(parse_integer(" -42 "), -42);
  EXPECT_EQ(parse_integer("+7"), 7);
  EXPECT_FALSE(parse_integer("4x"));
  EXPECT_FALSE(parse_integer(""));
  EXPECT_FALSE(parse_integer("99999999999999999999"));
  EXPECT_EQ(parse_unsigned("18446744073709551615"), UINT64_MAX);
  EXPECT_FALSE(parse_unsigned("-1"));
  EXPECT_EQ(parse_real("0.25"), 0.25);
  EXPECT_FALSE(parse_real("nan"));
  EXPECT_FALSE(parse_real("inf"));
  EXPECT_EQ(parse_bool("on"), true);
  EXPECT_EQ(parse_bool("False"), false);
  EXPECT_FALSE(parse_bool("maybe"));
  EXPECT_EQ(split_list(" a, b ,c", ','), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(split_list("a,,", ','), (std::vector<std::string>{"a", "", ""}));
  EXPECT_TRUE(split_list("  ", ',').empty());
  EXPECT_EQ(trim("\t x y \n"), "x y");
}

}  // namespace
