// Waits for the thread pool: a 32-bit word that threads sleep on until it changes (a futex on Linux; a short sleep
// loop elsewhere), with sequentially consistent loads and increments of it; yielding and the CPU's spin-wait hint.
#include "EdgeKernels.h"
#include <sched.h>
#include <stdint.h>
#if defined(__linux__)
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#include <time.h>
#endif

uint32_t edge_word_load(const uint32_t *word) { return __atomic_load_n(word, __ATOMIC_SEQ_CST); }

void edge_word_bump(uint32_t *word) { __atomic_add_fetch(word, 1, __ATOMIC_SEQ_CST); }

void edge_word_wait(uint32_t *word, uint32_t seen) {
#if defined(__linux__)
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
#else
    const struct timespec nap = { 0, 20000 };
    while (__atomic_load_n(word, __ATOMIC_SEQ_CST) == seen) nanosleep(&nap, NULL);
#endif
}

void edge_word_wake_all(uint32_t *word) {
#if defined(__linux__)
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)word;
#endif
}

void edge_yield(void) { sched_yield(); }

void edge_cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}
