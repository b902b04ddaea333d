/*
 * bytebuf.h - a growable byte buffer with little-endian writers, for tests that build
 * binary files (zip archives, pickles, headers) byte by byte, independently of the parsers
 * under test. Header-only (static inline); allocation failure aborts: test scaffolding.
 */
#ifndef UF_TESTS_BYTEBUF_H
#define UF_TESTS_BYTEBUF_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *p;      /* [cap] bytes, the first n written; owned, free() it */
    size_t n, cap;
} buf_t;

/* Append n bytes. */
static inline void b_put(buf_t *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n) nc *= 2;
        uint8_t *q = realloc(b->p, nc);
        if (!q) abort();
        b->p = q;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

/* Little-endian integers and raw text, as zip headers and binary pickle opcodes use. */
static inline void b_u8(buf_t *b, unsigned v) { uint8_t x = (uint8_t)v; b_put(b, &x, 1); }
static inline void b_u16(buf_t *b, unsigned v) { b_u8(b, v & 255); b_u8(b, (v >> 8) & 255); }
static inline void b_u32(buf_t *b, uint32_t v) { b_u16(b, v & 0xffff); b_u16(b, v >> 16); }
static inline void b_u64(buf_t *b, uint64_t v) { b_u32(b, (uint32_t)v); b_u32(b, (uint32_t)(v >> 32)); }
static inline void b_str(buf_t *b, const char *s) { b_put(b, s, strlen(s)); }

#endif
