/*
 * sha256.c - every SHA-256 of the library, in one place: the digest of checkpoint bytes that
 * a model file records as its backbone's identity (hex), and the model file's own checksum
 * (raw, one-shot when reading, incremental while writing). OpenSSL's libcrypto does the
 * hashing (hardware SHA extensions where the CPU has them: a 350 MB ViT-B/8 checkpoint hashes
 * in a fraction of a second); no other file calls it.
 */
#include "core/internal.h"

#include <openssl/evp.h>

bool uf__sha256_raw(const void *buf, size_t len, uint8_t md[32])
{
    unsigned int mdlen = 0;
    return EVP_Digest(buf ? buf : "", len, md, &mdlen, EVP_sha256(), NULL) && mdlen == 32;
}

void uf__sha256_hex(const void *buf, size_t len, char hex[65])
{
    uint8_t md[32];
    static const char digits[] = "0123456789abcdef";
    if (!uf__sha256_raw(buf, len, md)) {
        hex[0] = '\0'; /* only on allocation failure inside OpenSSL */
        return;
    }
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
}

/* uf__sha256_ctx is OpenSSL's EVP_MD_CTX under an opaque name, so that no other file needs
 * OpenSSL's headers. */
uf__sha256_ctx *uf__sha256_new(void)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md && !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        md = NULL;
    }
    return (uf__sha256_ctx *)md;
}

bool uf__sha256_update(uf__sha256_ctx *c, const void *buf, size_t len)
{
    return EVP_DigestUpdate((EVP_MD_CTX *)c, buf, len) == 1;
}

bool uf__sha256_final(uf__sha256_ctx *c, uint8_t md[32])
{
    unsigned int mdlen = 0;
    return EVP_DigestFinal_ex((EVP_MD_CTX *)c, md, &mdlen) == 1 && mdlen == 32;
}

void uf__sha256_free(uf__sha256_ctx *c) { EVP_MD_CTX_free((EVP_MD_CTX *)c); }
