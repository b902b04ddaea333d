/*
 * dispatch.c - choose the kernel table once per process from cpuid, or from UF_CPU.
 *
 * Why here and at run time: the library is compiled for baseline x86-64 so the same binary
 * runs on every x86-64 CPU; only the kernels in kern_<level>.c use wider instructions, and
 * they are called only after this check. UF_CPU=generic|avx2|avx512|avx512bf16 forces a
 * lower level (tests run every level the machine has, benchmarks compare them); a level
 * above the CPU's is clamped to the best one it has, and uf__cpu_note() says so (the CLI
 * prints it), since running it would die with an illegal instruction.
 * __builtin_cpu_supports also checks that the OS saves the wide registers (XGETBV).
 */
#include "core/internal.h"
#include "kernels/kern.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {"generic", "avx2", "avx512", "avx512bf16"};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static uf__cpu_level level, best;
static char note[160];

uf__cpu_level uf__cpu_level_best(void)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return UF__CPU_GENERIC;
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512dq") || !__builtin_cpu_supports("avx512vl"))
        return UF__CPU_AVX2;
    if (!__builtin_cpu_supports("avx512bf16")) return UF__CPU_AVX512;
    return UF__CPU_AVX512BF16;
}

const char *uf__cpu_level_name(uf__cpu_level l)
{
    return (unsigned)l < sizeof names / sizeof names[0] ? names[l] : "?";
}

static void choose(void)
{
    best = uf__cpu_level_best();
    level = best;
    const char *e = getenv("UF_CPU");
    if (!e || !*e) return;
    int want = -1;
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (!strcmp(e, names[i])) want = i;
    if (want < 0)
        snprintf(note, sizeof note, "UF_CPU=%.40s is not one of generic, avx2, avx512, "
                 "avx512bf16; using %s", e, names[best]);
    else if (want > (int)best)
        snprintf(note, sizeof note, "UF_CPU=%s: this CPU lacks it; using %s", names[want],
                 names[best]);
    else
        level = (uf__cpu_level)want;
}

uf__cpu_level uf__cpu_level_get(void)
{
    pthread_once(&once, choose);
    return level;
}

const char *uf__cpu_note(void)
{
    pthread_once(&once, choose);
    return note;
}

const uf__kern *uf__kern_get(void)
{
    switch (uf__cpu_level_get()) {
    case UF__CPU_AVX512BF16: return &uf__kern_avx512bf16;
    case UF__CPU_AVX512: return &uf__kern_avx512;
    case UF__CPU_AVX2: return &uf__kern_avx2;
    default: return &uf__kern_generic;
    }
}

const char *uf_cpu_level(void) { return uf__cpu_level_name(uf__cpu_level_get()); }

const char *uf_cpu_note(void) { return uf__cpu_note(); }
