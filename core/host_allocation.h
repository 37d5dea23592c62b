// How this process's C library hands out host memory. glibc serves a block above its mmap
// threshold (which grows with the blocks freed, up to 32 MiB) with a fresh mmap and unmaps it at
// free: a CPU training step whose buffers are larger (a rank's 64K tokens × width 128 in float32 is
// 32 MiB) then faults in and zeroes every page of them again at every step. Measured on a 2-core
// AMD EPYC VM, `longhaul train` at 65536 tokens per step, width 128: 6.3 million page faults and
// 14.8 s of system time in 6 steps, 2.9–3.9 s a step; served from the heap, 0.8 million, 3.0 s,
// 1.5–1.6 s a step, for a peak resident set of 3.4 GB instead of 2.6 GB.
#pragma once

namespace longhaul {

// Makes malloc serve every block from its heap and keep what is freed there for the next
// requests (no mmap'd blocks, no trimming), for the rest of the process: the steady state of a
// training loop, whose every step needs the same memory again. The resident set then stays at the
// largest step's (plus fragmentation) instead of falling between steps. Returns false, changing
// nothing, where the C library is not glibc.
bool keep_freed_host_memory();

}  // namespace longhaul
