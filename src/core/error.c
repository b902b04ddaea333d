/*
 * error.c - per-thread error messages, status names and the version string.
 *
 * Errors follow sqlite's model: a call returns a status, and a message for the calling
 * thread is kept in thread-local storage so concurrent sessions never see each other's
 * messages.
 */
#include "core/internal.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char tl_msg[1024];

uf_status uf__err(uf_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_msg, sizeof tl_msg, fmt, ap);
    va_end(ap);
    return s;
}

uf_status uf__err_prefix(uf_status s, const char *prefix)
{
    char tmp[sizeof tl_msg];
    size_t lp = strlen(prefix), lm = strlen(tl_msg);
    if (lp > sizeof tmp - 3) lp = sizeof tmp - 3;
    if (lm > sizeof tmp - 3 - lp) lm = sizeof tmp - 3 - lp;
    memcpy(tmp, prefix, lp);
    memcpy(tmp + lp, ": ", 2);
    memcpy(tmp + lp + 2, tl_msg, lm);
    tmp[lp + 2 + lm] = '\0';
    memcpy(tl_msg, tmp, sizeof tl_msg);
    return s;
}

const char *uf_errmsg(void) { return tl_msg; }

const char *uf_version(void) { return UF_VERSION_STRING; }

int uf_version_number(void) { return UF_VERSION_NUMBER; }

const char *uf_status_str(uf_status s)
{
    switch (s) {
    case UF_OK: return "ok";
    case UF_ERR_ARG: return "invalid argument";
    case UF_ERR_IO: return "i/o error";
    case UF_ERR_FORMAT: return "format error";
    case UF_ERR_UNSUPPORTED: return "unsupported";
    case UF_ERR_NOMEM: return "out of memory";
    case UF_ERR_LIMIT: return "limit exceeded";
    case UF_ERR_NONFINITE: return "non-finite value";
    case UF_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}
