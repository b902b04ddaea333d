/*
 * sha256.c - SHA-256 digests of checkpoint bytes, the identity a model file records for its
 * backbone. OpenSSL's libcrypto does the hashing (hardware SHA extensions where the CPU has
 * them: a 350 MB ViT-B/8 checkpoint hashes in a fraction of a second).
 */
#include "core/internal.h"

#include <openssl/evp.h>

void uf__sha256_hex(const void *buf, size_t len, char hex[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    static const char digits[] = "0123456789abcdef";
    if (!EVP_Digest(buf ? buf : "", len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
        hex[0] = '\0'; /* only on allocation failure inside OpenSSL */
        return;
    }
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
}
