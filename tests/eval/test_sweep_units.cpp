// The sweep's work units: files written as units finish, --resume reusing
// only the files that hold the same description, and unit files round-trip.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "eval/sweep.h"
#include "eval/sweep_units.h"
#include "io/files.h"

namespace fewstep {
namespace {
namespace fs = std::filesystem;

fs::path fresh(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("fewstep_test_units_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

/// results.csv without its wall_ms column (the 8th).
std::string csv_without_wall(const fs::path& file) {
  std::ifstream in(file);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::stringstream s(line);
    for (std::string c; std::getline(s, c, ',');) cells.push_back(c);
    for (size_t i = 0; i < cells.size(); ++i)
      if (i != 7) out += cells[i] + ",";
    out += "\n";
  }
  return out;
}

std::vector<fs::path> unit_files(const fs::path& out) {
  std::vector<fs::path> v;
  for (const auto& e : fs::directory_iterator(out / "units")) v.push_back(e.path());
  std::sort(v.begin(), v.end());
  return v;
}

SweepOptions gmm_sweep(const fs::path& out) {
  SweepOptions o;
  o.model = "analytic:gmm:shape=3x4x4";
  o.samplers = {"ddim", "heun"};
  o.steps = {2, 4};
  o.seeds = {1, 2};
  o.rt.dtype = "fp64";
  o.rt.threads = 1;
  o.out = out;
  return o;
}

TEST(SweepUnits, EveryRunAndReferenceIsAUnitFile) {
  const SweepOptions o = gmm_sweep(fresh("all"));
  int64_t total = 0;
  run_sweep(o, [&](int64_t, int64_t all) { total = all; });
  // 2 seeds × (2 samplers × 2 steps + the reference).
  EXPECT_EQ(total, 10);
  EXPECT_EQ(unit_files(o.out).size(), 10u);
  fs::remove_all(o.out);
}

// --resume: missing units run, finished ones are read back, and a file whose
// name matches but whose description differs (or that is truncated) runs
// again. The files equal the uninterrupted sweep's (but wall_ms).
TEST(SweepUnits, ResumeRunsOnlyTheMissingUnits) {
  SweepOptions o = gmm_sweep(fresh("resume"));
  run_sweep(o);
  const std::string want_csv = csv_without_wall(o.out / "results.csv");
  const std::vector<uint8_t> want_grid = read_file_bytes(o.out / "grid-p0-s1.png");
  fs::remove(o.out / "results.csv");
  const std::vector<fs::path> units = unit_files(o.out);
  fs::remove(units[0]);
  fs::remove(units[1]);
  {
    std::vector<uint8_t> b = read_file_bytes(units[2]);
    b.resize(b.size() / 2);
    write_file_atomic(units[2], b, true);
  }
  fs::copy_file(units[4], units[3], fs::copy_options::overwrite_existing);  // another unit's description
  o.resume = true;
  int64_t ran = 0;
  run_sweep(o, [&](int64_t done, int64_t) { ran = done; });
  EXPECT_EQ(ran, 4);
  EXPECT_EQ(csv_without_wall(o.out / "results.csv"), want_csv);
  EXPECT_EQ(read_file_bytes(o.out / "grid-p0-s1.png"), want_grid);
  // Nothing left to run.
  run_sweep(o, [&](int64_t done, int64_t) { ran = 100 + done; });
  EXPECT_EQ(ran, 4) << "a complete resume ran units";
  fs::remove_all(o.out);
}

TEST(SweepUnits, FileRoundTrip) {
  SweepUnit u;
  u.spec = {{"kind", "run"}, {"sampler", "ddim"}, {"steps", 4}};
  u.name();
  EXPECT_EQ(u.id.size(), 18u);
  EXPECT_EQ(u.id.substr(0, 2), "u-");
  UnitResult r;
  r.latents = at::arange(12, at::kDouble).reshape({1, 3, 2, 2});
  r.image = Image(2, 2, 3, 7);
  r.nfe = 4;
  r.unet_calls = 4;
  r.unet_rows = 8;
  r.wall_ms = 1.5;
  r.rank = 3;
  const auto back = decode_unit(encode_unit(u, r), u, "test");
  ASSERT_TRUE(back);
  EXPECT_TRUE(at::equal(back->latents, r.latents));
  EXPECT_EQ(back->image.pixels, r.image.pixels);
  EXPECT_EQ(back->rank, 3);
  EXPECT_EQ(back->unet_rows, 8);
  SweepUnit other = u;
  other.spec["steps"] = 8;
  EXPECT_FALSE(decode_unit(encode_unit(u, r), other, "test")) << "another description must not match";
  EXPECT_FALSE(decode_unit({1, 2, 3}, u, "test"));
}

}  // namespace
}  // namespace fewstep
