// Reading and atomic writing of files (see files.h).
#include "io/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

namespace fewstep {
namespace {

// Registered temporaries live in fixed slots so that a signal handler can
// read them without allocating: a slot is free when its flag is false.
constexpr size_t kSlots = 64, kPathMax = 4096;
struct Slot {
  std::atomic<bool> used{false};
  bool folder = false;
  char path[kPathMax] = {};
};
std::array<Slot, kSlots> g_slots;

void register_path(const std::filesystem::path& path, bool folder) {
  const std::string s = path.string();
  if (s.size() >= kPathMax) return;
  for (Slot& slot : g_slots) {
    if (slot.used.load()) continue;
    std::memcpy(slot.path, s.c_str(), s.size() + 1);
    slot.folder = folder;
    slot.used.store(true);
    return;
  }
}

std::filesystem::path folder_of(const std::filesystem::path& path) {
  return path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
}

/// Removes the temporary file and throws "<named>: <what>: <errno text>".
[[noreturn]] void discard_and_throw(const std::filesystem::path& tmp, const std::filesystem::path& named,
                                    const std::string& what) {
  const std::string reason = std::strerror(errno);
  ::unlink(tmp.c_str());
  unregister_temporary(tmp);
  throw FileError(named.string() + ": " + what + ": " + reason);
}

}  // namespace

void register_temporary(const std::filesystem::path& path) { register_path(path, false); }

void register_created_folder(const std::filesystem::path& path) { register_path(path, true); }

void unregister_temporary(const std::filesystem::path& path) {
  const std::string s = path.string();
  for (Slot& slot : g_slots)
    if (slot.used.load() && s == slot.path) slot.used.store(false);
}

void remove_registered_temporaries() noexcept {
  // Files first, so that a folder holding only temporaries becomes empty.
  for (Slot& slot : g_slots)
    if (slot.used.load() && !slot.folder) ::unlink(slot.path);
  // Folders last registered first: a folder created inside another (a
  // sweep's units/ in its output folder) comes after it in the slots.
  for (size_t i = kSlots; i-- > 0;)
    if (g_slots[i].used.load() && g_slots[i].folder) ::rmdir(g_slots[i].path);
}

std::vector<uint8_t> read_file_bytes(const std::filesystem::path& file) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) throw FileError(file.string() + ": is a folder, expected a file");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw FileError(file.string() + ": cannot open");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void check_writable(const std::filesystem::path& path) {
  const std::filesystem::path dir = folder_of(path);
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) throw FileError(path.string() + ": folder does not exist");
  if (std::filesystem::is_directory(path, ec)) throw FileError(path.string() + ": is a folder, expected a file name");
  if (access(dir.c_str(), W_OK) != 0) throw FileError(path.string() + ": folder is not writable");
}

std::filesystem::path write_file_atomic(const std::filesystem::path& path, const std::vector<uint8_t>& bytes,
                                        bool overwrite) {
  check_writable(path);
  const std::filesystem::path dir = folder_of(path);
  std::string tmp_name = ".";  // built in steps: GCC 12 warns falsely (-Wrestrict) on "." + string
  tmp_name += path.filename().string();
  tmp_name += ".tmp-XXXXXX";
  const std::string tmpl = (dir / tmp_name).string();
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  const int fd = mkstemp(name.data());
  if (fd < 0) throw FileError(path.string() + ": cannot create a temporary file: " + std::strerror(errno));
  const std::filesystem::path tmp(name.data());
  register_temporary(tmp);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      ::close(fd);
      discard_and_throw(tmp, path, "write failed");
    }
    done += static_cast<size_t>(n);
  }
  fchmod(fd, 0644);
  if (::fsync(fd) != 0 || ::close(fd) != 0) discard_and_throw(tmp, path, "write failed");
  if (overwrite) {
    if (std::rename(tmp.c_str(), path.c_str()) != 0) discard_and_throw(tmp, path, "cannot rename into place");
    unregister_temporary(tmp);
    return path;
  }
  // link() never replaces an existing file, so a concurrent writer cannot be clobbered either.
  std::filesystem::path target = path;
  for (int k = 1; k < 10000; ++k) {
    if (::link(tmp.c_str(), target.c_str()) == 0) {
      ::unlink(tmp.c_str());
      unregister_temporary(tmp);
      return target;
    }
    if (errno != EEXIST) discard_and_throw(tmp, target, "cannot write");
    target = dir / (path.stem().string() + "." + std::to_string(k) + path.extension().string());
  }
  errno = EEXIST;
  discard_and_throw(tmp, path, "no free numbered name");
}

}  // namespace fewstep
