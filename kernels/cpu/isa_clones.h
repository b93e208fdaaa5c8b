// FEWSTEP_ISA_CLONES: compiles a CPU kernel's hot function once per x86-64
// ISA level (AVX-512, AVX2, baseline) and picks one at load time
// (target_clones). With GCC the clones are also `flatten`ed, so everything
// they call is inlined into each ISA's copy; clang refuses target_clones
// together with flatten, and there the helpers' own always_inline does it.
#pragma once

#if defined(__clang__)
#define FEWSTEP_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FEWSTEP_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), flatten))
#endif
