// libFuzzer target: the .npy reader (io/npy.h parse_npy) on arbitrary bytes.
// A file it accepts must survive encode_npy and parse back unchanged.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "io/files.h"
#include "io/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  fewstep::NpyArray a;
  try {
    a = fewstep::parse_npy(bytes, "fuzz.npy");
  } catch (const fewstep::FileError&) {
    return 0;  // refused with a one-line error: fine
  }
  const fewstep::NpyArray back = fewstep::parse_npy(fewstep::encode_npy(a), "round-trip");
  if (back.descr != a.descr || back.shape != a.shape || back.data != a.data) std::abort();
  return 0;
}
