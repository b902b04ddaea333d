/*
 * sizes.c - overflow-safe size arithmetic. Every allocation whose size comes from a file
 * (image dimensions, tensor shapes, counts in a header) is computed through these, so a
 * hostile header yields UF_ERR_LIMIT instead of a wrapped, too-small buffer.
 */
#include "core/internal.h"

#include <stdint.h>

bool uf__mul_ok(size_t a, size_t b, size_t *r)
{
    if (a != 0 && b > SIZE_MAX / a) return false;
    *r = a * b;
    return true;
}

bool uf__add_ok(size_t a, size_t b, size_t *r)
{
    if (b > SIZE_MAX - a) return false;
    *r = a + b;
    return true;
}
