// Ctrl-C in the middle of generate, sweep and profile: exit 130, no
// temporary file, no partial output, no output folder the command created.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace {

/// Starts `fewstep args...` with stdout and stderr to /dev/null; returns its pid.
pid_t start(const std::vector<std::string>& args) {
  const pid_t pid = fork();
  if (pid == 0) {
    std::vector<std::string> all{FEWSTEP_BIN};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    freopen("/dev/null", "w", stdout);
    freopen("/dev/null", "w", stderr);
    execv(FEWSTEP_BIN, argv.data());
    _exit(127);
  }
  return pid;
}

/// True once the process catches SIGINT (bit 1 of SigCgt in /proc/PID/status),
/// that is once main() has installed fewstep's handler: a signal sent earlier
/// would kill the process before it could clean up, on a busy machine too.
bool catches_sigint(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("SigCgt:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> (SIGINT - 1)) & 1;
  }
  return false;
}

/// Sends SIGINT once the handler is installed and `ready()` holds (or after
/// 60 s) while the process still runs; returns the exit code (-1 when it ended
/// before the signal, -2 when a signal ended it).
template <typename Ready>
int interrupt_when(pid_t pid, Ready ready) {
  const auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  while (!(catches_sigint(pid) && ready()) && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
    if (waitpid(pid, &status, WNOHANG) == pid) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // into the sampling loop
  if (waitpid(pid, &status, WNOHANG) == pid) return -1;
  kill(pid, SIGINT);
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

class Interrupt : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fewstep-int-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    model_ = (fs::path(FEWSTEP_TEST_MODELS) / "tiny-blocks").string();
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  std::string model_;
};

// A long batch: interrupted while sampling, it leaves the folder as it was.
TEST_F(Interrupt, GenerateLeavesNothing) {
  const pid_t pid =
      start({"generate", "--model", model_, "-p", "x", "--steps", "500", "-b", "50", "--seed", "1", "--threads", "1",
             "--out", (dir_ / "img.png").string(), "--stats-json", (dir_ / "s.json").string()});
  // The model loads within a second or two after the handler is installed; the batch takes far longer.
  std::chrono::steady_clock::time_point handler_seen{};
  const int code = interrupt_when(pid, [&] {
    const auto now = std::chrono::steady_clock::now();
    if (handler_seen == std::chrono::steady_clock::time_point{}) handler_seen = now;
    return now - handler_seen > std::chrono::milliseconds(1500);
  });
  EXPECT_EQ(code, 130);
  EXPECT_TRUE(listing(dir_).empty()) << listing(dir_).size() << " files left, first: " << listing(dir_)[0];
}

// Sweep and profile create their output folder; interrupted, they remove it.
TEST_F(Interrupt, SweepRemovesTheFolderItCreated) {
  const fs::path out = dir_ / "sweep";
  const pid_t pid = start({"sweep", "--model", model_, "-p", "x", "--samplers", "ddim,euler,heun", "--steps",
                           "100,200,400", "--reference", "unipc:800", "--threads", "1", "--out", out.string()});
  const int code = interrupt_when(pid, [&] { return fs::exists(out); });
  EXPECT_EQ(code, 130);
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(Interrupt, ProfileRemovesTheFolderItCreated) {
  const fs::path out = dir_ / "prof";
  const pid_t pid =
      start({"profile", "--model", model_, "-p", "x", "--steps", "900", "--threads", "1", "--out", out.string()});
  const int code = interrupt_when(pid, [&] { return fs::exists(out); });
  EXPECT_EQ(code, 130);
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
