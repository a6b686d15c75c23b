// Process-wide allocator policy for the CLI and the benches.
//
// glibc serves every block above its mmap threshold (dynamic, at most 32 MB) with a fresh mmap and
// munmaps it on free, so each re-allocation of a large activation page-faults zeroed pages again:
// Janus' VQ decode spent ~2.4 s of 5.6 s in the kernel that way. keep_freed_memory_for_reuse()
// fixes the threshold at `mmap_threshold_bytes` (256 MiB by default): blocks below it come from the
// heap and are reused after free; larger ones (a 1024^2 VAE decode's 0.5-1 GiB activations) are
// still mmapped and returned to the OS at once, so a stage with huge temporaries does not leave
// them in the heap for the rest of the run (with no mmap at all, bench_bagel's RSS grew from 7.8
// to 15.0 GiB after the VAE phase). OMNI_MALLOC_REUSE=0 in the environment keeps glibc's defaults.
#pragma once
#include <cstddef>

namespace omni {

// Returns whether the policy was applied (false when OMNI_MALLOC_REUSE=0).
bool keep_freed_memory_for_reuse(size_t mmap_threshold_bytes = size_t{256} << 20);

// Gives the heap's free pages back to the OS (malloc_trim): after a one-off swap of large
// tensors for smaller ones (--dtype int8 replacing fp32 weights), which the policy above would
// otherwise keep resident for the rest of the run.
void return_free_memory_to_os();

// Gives the whole pages inside [p, p + bytes) back to the OS (madvise MADV_DONTNEED); the partial
// pages at either end are kept. Their contents are dropped: anonymous memory reads back as zeros,
// a private file mapping as the file. For bytes that are dead or can be re-read: a tensor copied
// out of a memory-mapped checkpoint, a parameter whose shard has been taken.
void drop_whole_pages(const void* p, size_t bytes);

// Asks for 2 MiB pages under the whole huge pages inside [p, p + bytes) (madvise MADV_HUGEPAGE),
// for memory about to be written for the first time: the kernel's THP mode is often "madvise".
// Decode steps stream every weight once per token, and with 4 KiB pages the hardware prefetchers
// stop at each page: the one/two-row loops read a Janus-Pro-7B matrix at 28-36 GB/s on 4 KiB pages
// and 34-42 GB/s on 2 MiB pages (2-core EPYC); page faults drop 512-fold too. Advice only:
// ignored where unsupported.
void prefer_huge_pages(void* p, size_t bytes);

// MemAvailable of /proc/meminfo in bytes (what can be allocated without swapping out other
// processes), or 0 where it cannot be read: for a request whose buffers could never fit to fail
// with a message instead of the OOM killer.
size_t available_memory_bytes();

}  // namespace omni
