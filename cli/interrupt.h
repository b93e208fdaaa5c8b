// Ctrl-C and SIGTERM during a command: no temporary file and no partial
// output stays behind.
#pragma once

namespace fewstep::cli {

/// Installs handlers for SIGINT, SIGTERM and SIGHUP that remove every
/// registered temporary file and every registered output folder that is
/// still empty (io/files.h), print "fewstep: interrupted" on stderr and exit
/// with 128 + the signal number (130 for Ctrl-C), as shells report it. Only
/// async-signal-safe calls run in the handler.
void install_interrupt_handlers();

}  // namespace fewstep::cli
