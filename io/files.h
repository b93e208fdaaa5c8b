// Files: reading whole files, and atomic, never-clobbering writes. No torch.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace fewstep {

/// One-line error about an input or output file (names the path).
struct FileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The bytes of `file`. Throws FileError ("<file>: cannot open").
std::vector<uint8_t> read_file_bytes(const std::filesystem::path& file);

/// Writes bytes atomically: a temporary file beside `path`, then a rename.
/// Without `overwrite`, an existing `path` is never replaced: the bytes go to
/// the first free numbered name (`name.1.png`, `name.2.png`, ...; a dot, so
/// that it cannot be read as the `name-<seed>.png` of a batch), which is
/// returned. The temporary file is registered (register_temporary) while it
/// exists, so an interrupt removes it. Throws FileError (naming the path) when
/// the folder cannot be written.
std::filesystem::path write_file_atomic(const std::filesystem::path& path, const std::vector<uint8_t>& bytes,
                                        bool overwrite);

/// Checks up front that a file can be created in `path`'s folder (so a bad
/// --out fails before any work). Throws FileError.
void check_writable(const std::filesystem::path& path);

/// Temporary files that exist right now (written by write_file_atomic or
/// registered by other writers), and output folders a command created, so
/// that an interrupt (cli/interrupt.h) can remove them: the files always,
/// the folders only while empty. remove_registered_temporaries() uses only
/// async-signal-safe calls (unlink, rmdir) and no allocation. At most 64
/// paths of under 4096 bytes are held; more are not registered.
void register_temporary(const std::filesystem::path& path);
void unregister_temporary(const std::filesystem::path& path);
void register_created_folder(const std::filesystem::path& path);
void remove_registered_temporaries() noexcept;

}  // namespace fewstep
