/*
 * random.c - the library's one random generator, splitmix64 (Steele, Lea, Flood 2014).
 *
 * Why one: the coreset's projection and starting points, k-means++ seeding, the random
 * test backbones, the few-shot draw and the demo's synthetic images all need seeded,
 * reproducible streams; five private copies of the same mixer had to stay identical by
 * hand. Every caller now draws from uf_splitmix64, and the scripts that reproduce a draw in
 * Python (scripts/gen_kernel_golden.py) follow this one definition.
 */
#include "core/internal.h"

uint64_t uf_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double uf__unif53(uint64_t *state) { return (double)(uf_splitmix64(state) >> 11) * 0x1.0p-53; }
