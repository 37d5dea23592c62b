#include "core/host_allocation.h"

#include <cstdlib>  // defines __GLIBC__ on glibc

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace longhaul {

bool keep_freed_host_memory() {
#if defined(__GLIBC__)
  // M_MMAP_MAX 0: no block is mmap'd (a thread arena that cannot hold one falls back to the main
  // heap). M_TRIM_THRESHOLD -1: free never returns the heap's top to the system.
  const bool no_mmap = mallopt(M_MMAP_MAX, 0) == 1;
  const bool no_trim = mallopt(M_TRIM_THRESHOLD, -1) == 1;
  return no_mmap && no_trim;
#else
  return false;
#endif
}

}  // namespace longhaul
