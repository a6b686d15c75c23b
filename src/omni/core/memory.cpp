#include "omni/core/memory.h"

#include <cstdio>

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace omni {

bool keep_freed_memory_for_reuse(size_t mmap_threshold_bytes) {
  const char* env = std::getenv("OMNI_MALLOC_REUSE");
  if (env && std::strcmp(env, "0") == 0) return false;
  // A fixed M_MMAP_THRESHOLD also turns off glibc's dynamic threshold. The heap top is given back
  // only when more than 2 GiB is free there: a lower trim threshold (512 MiB) gave the memory of
  // each SigLIP layer's attention chunks back and re-faulted it (980^2 ViT: 46 s -> 96 s).
  mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold_bytes));
  mallopt(M_TRIM_THRESHOLD, 2000000000);
  return true;
}

void return_free_memory_to_os() { malloc_trim(0); }

void drop_whole_pages(const void* p, size_t bytes) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(p);
  const uintptr_t first = (begin + page - 1) / page * page, last = (begin + bytes) / page * page;
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

void prefer_huge_pages(void* p, size_t bytes) {
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const auto begin = reinterpret_cast<uintptr_t>(p);
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1), last = (begin + bytes) & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
}

size_t available_memory_bytes() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  size_t kib = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemAvailable: %zu kB", &kib) == 1) break;
  std::fclose(f);
  return kib * 1024;
}

}  // namespace omni
