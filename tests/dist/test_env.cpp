// dist/env: the launcher's variables, the --dist flags, the request hash and
// the work plans. Torch-free; the process tests are test_dist.py.
#include <gtest/gtest.h>

#include <map>
#include <numeric>
#include <string>

#include "dist/env.h"

namespace fewstep::dist {
namespace {

std::function<const char*(const char*)> env_of(const std::map<std::string, std::string>& m) {
  return [m](const char* name) -> const char* {
    auto it = m.find(name);
    return it == m.end() ? nullptr : it->second.c_str();
  };
}

TEST(LaunchEnv, ReadsTorchrunsVariables) {
  const LaunchEnv e = read_launch_env(env_of({{"RANK", "3"},
                                              {"WORLD_SIZE", "8"},
                                              {"LOCAL_RANK", "1"},
                                              {"MASTER_ADDR", "10.0.0.2"},
                                              {"MASTER_PORT", "29400"},
                                              {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                              {"TORCHELASTIC_RUN_ID", "job7"},
                                              {"TORCHELASTIC_RESTART_COUNT", "2"}}));
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "10.0.0.2");
  EXPECT_EQ(e.master_port, 29400);
  EXPECT_TRUE(e.agent_store);
  EXPECT_EQ(e.run_id, "job7");
  EXPECT_EQ(e.restart_count, "2");
}

TEST(LaunchEnv, DefaultsToOneProcessAndRefusesBadValues) {
  const LaunchEnv e = read_launch_env(env_of({}));
  EXPECT_EQ(e.world_size, 1);
  EXPECT_EQ(e.rank, 0);
  EXPECT_FALSE(e.agent_store);
  // PyTorch compares with str(True): "true" or "1" is not the agent store.
  EXPECT_FALSE(read_launch_env(env_of({{"TORCHELASTIC_USE_AGENT_STORE", "1"}})).agent_store);
  auto error = [](const std::map<std::string, std::string>& m) {
    try {
      read_launch_env(env_of(m));
    } catch (const DistError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error({{"RANK", "2"}, {"WORLD_SIZE", "2"}}), "RANK=2 is not below WORLD_SIZE=2");
  EXPECT_NE(error({{"WORLD_SIZE", "two"}}).find("WORLD_SIZE='two'"), std::string::npos);
  EXPECT_NE(error({{"MASTER_PORT", "70000"}}).find("MASTER_PORT='70000'"), std::string::npos);
  EXPECT_NE(error({{"WORLD_SIZE", "0"}}).find("WORLD_SIZE='0'"), std::string::npos);
}

TEST(ResolveDist, AutoIsOnUnderALauncherOnly) {
  LaunchEnv one, two;
  two.world_size = 2;
  DistFlags f;
  EXPECT_EQ(resolve_dist(f, one, "cpu").backend, Backend::off);
  EXPECT_EQ(resolve_dist(f, two, "cpu").backend, Backend::gloo);
  EXPECT_EQ(resolve_dist(f, two, "cuda").backend, Backend::nccl);
  EXPECT_EQ(resolve_dist(f, two, "cuda:1").backend, Backend::nccl);
  f.mode = "off";
  EXPECT_EQ(resolve_dist(f, two, "cpu").backend, Backend::off);
  f.mode = "gloo";
  EXPECT_EQ(resolve_dist(f, two, "cuda").backend, Backend::gloo);
  f.mode = "nccl";
  EXPECT_THROW(resolve_dist(f, two, "cpu"), std::invalid_argument);
  f.mode = "mpi";
  EXPECT_THROW(resolve_dist(f, two, "cpu"), std::invalid_argument);
  f.mode = "auto";
  f.timeout_s = 0;
  EXPECT_THROW(resolve_dist(f, two, "cpu"), std::invalid_argument);
}

// FNV-1a 64 test vectors (Fowler/Noll/Vo reference: "" and "a").
TEST(RequestHash, Fnv1a64) {
  EXPECT_EQ(fnv1a_hex(""), "cbf29ce484222325");
  EXPECT_EQ(fnv1a_hex("a"), "af63dc4c8601ec8c");
  EXPECT_EQ(fnv1a_hex("foobar"), "85944171f73967e8");
  const char* argv[] = {"fewstep", "sweep", "--steps", "2,4"};
  set_command_line(4, argv);
  EXPECT_EQ(command_line(), std::string("sweep\0--steps\0"
                                        "2,4",
                                        17));
}

// LPT: costs 7 5 4 3 3 2 on 2 ranks -> 7 | 5 -> 7 | 9 -> 10 | 9 -> 10 | 12 -> 12 | 12 (Graham's rule by hand).
TEST(BalanceByCost, LongestFirstToTheLeastLoaded) {
  const std::vector<double> costs = {3, 7, 2, 5, 4, 3};
  const std::vector<int> owner = balance_by_cost(costs, 2);
  ASSERT_EQ(owner.size(), costs.size());
  double load[2] = {0, 0};
  for (size_t i = 0; i < costs.size(); ++i) load[owner[i]] += costs[i];
  EXPECT_EQ(load[0], 12);
  EXPECT_EQ(load[1], 12);
  EXPECT_EQ(owner[1], 0);  // 7 first, to rank 0
  EXPECT_EQ(owner[3], 1);  // 5 to rank 1
  // Equal costs alternate from rank 0 (ties: the lower index and the lower rank).
  EXPECT_EQ(balance_by_cost({1, 1, 1, 1, 1}, 3), (std::vector<int>{0, 1, 2, 0, 1}));
  EXPECT_EQ(balance_by_cost({1, 2}, 1), (std::vector<int>{0, 0}));
}

TEST(ContiguousShare, SizesDifferByAtMostOne) {
  for (int64_t n : {0, 1, 2, 5, 8, 16})
    for (int w : {1, 2, 3, 8}) {
      int64_t next = 0;
      for (int r = 0; r < w; ++r) {
        const auto [b, e] = contiguous_share(n, r, w);
        EXPECT_EQ(b, next) << n << " " << w << " " << r;
        EXPECT_TRUE(e - b == n / w || e - b == n / w + 1);
        next = e;
      }
      EXPECT_EQ(next, n);
    }
  // A window of 2 on 3 ranks: the last rank has nothing.
  EXPECT_EQ(contiguous_share(2, 2, 3), (std::pair<int64_t, int64_t>{2, 2}));
}

}  // namespace
}  // namespace fewstep::dist
