// Interrupt handling (see interrupt.h).
#include "cli/interrupt.h"

#include <unistd.h>

#include <csignal>

#include "io/files.h"

namespace fewstep::cli {
namespace {

extern "C" void on_signal(int sig) {
  remove_registered_temporaries();
  static const char kMessage[] = "\nfewstep: interrupted\n";
  [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
  ::_exit(128 + sig);
}

}  // namespace

void install_interrupt_handlers() {
  struct sigaction sa = {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
}

}  // namespace fewstep::cli
