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

#include <cpuid.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

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

/* ---- AMX permission (kern_bf16.c's tiles) -------------------------------------------------
 * Here, compiled for baseline x86-64, since uf_enable_amx may run on any CPU. Linux hands
 * the tile registers to a process only after arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA), a
 * process-wide change (it enlarges every thread's signal frames): the library only checks
 * whether the process holds it; uf_enable_amx() asks. */

static pthread_once_t amx_once = PTHREAD_ONCE_INIT;
static int amx_cpu;  /* AMX-BF16 and AMX-TILE, and UF_AMX is not 0 */
static int amx_perm; /* the process holds XTILEDATA (__atomic accesses) */

#define UF_ARCH_GET_XCOMP_PERM 0x1022
#define UF_ARCH_REQ_XCOMP_PERM 0x1023
#define UF_XFEATURE_XTILEDATA 18

static void amx_probe(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24)))
        return; /* AMX-BF16, AMX-TILE */
    const char *e = getenv("UF_AMX");
    if (e && !strcmp(e, "0")) return;
    amx_cpu = 1;
    unsigned long mask = 0;
    if (syscall(SYS_arch_prctl, UF_ARCH_GET_XCOMP_PERM, &mask) == 0 &&
        (mask & (1ul << UF_XFEATURE_XTILEDATA)))
        __atomic_store_n(&amx_perm, 1, __ATOMIC_RELEASE);
}

int uf__amx_ready(void)
{
    pthread_once(&amx_once, amx_probe);
    return amx_cpu && __atomic_load_n(&amx_perm, __ATOMIC_ACQUIRE);
}

int uf__amx_enable(void)
{
    pthread_once(&amx_once, amx_probe);
    if (!amx_cpu) return 0;
    if (!__atomic_load_n(&amx_perm, __ATOMIC_ACQUIRE) &&
        syscall(SYS_arch_prctl, UF_ARCH_REQ_XCOMP_PERM, UF_XFEATURE_XTILEDATA) == 0)
        __atomic_store_n(&amx_perm, 1, __ATOMIC_RELEASE);
    return __atomic_load_n(&amx_perm, __ATOMIC_ACQUIRE);
}

uf_status uf_enable_amx(void)
{
    if (uf__cpu_level_best() < UF__CPU_AVX512BF16)
        return uf__err(UF_ERR_UNSUPPORTED, "AMX: this CPU has no AVX512_BF16");
    if (!uf__amx_enable())
        return uf__err(UF_ERR_UNSUPPORTED, "AMX: not available (no AMX-BF16 on this CPU, "
                                           "UF_AMX=0, or the kernel refused the tile state)");
    return UF_OK;
}
