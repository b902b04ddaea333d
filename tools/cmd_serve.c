/*
 * cmd_serve.c - `uniformaly serve`: the detector as a long-running HTTP/1.1 service, so a
 * line integration pays the model load once and sends each camera frame as a request body
 * (issue 14). libmicrohttpd (Debian's libmicrohttpd-dev) does the HTTP; one thread per
 * connection reads the body, and K scorers of the one loaded model score in parallel.
 *
 *   POST /v1/predict[?name=N&overlay=1]  image bytes -> predict --json's object
 *                                         (+ "overlay_png": base64 PNG with overlay=1)
 *   GET  /v1/health                       {"status": "ok", workers, busy, queued, served}
 *   GET  /v1/model                        info --json's object
 *
 * Limits: body size (413), image pixels (413), connections (a connection opened while
 * --max-connections are open gets 503 to its request and is closed; beyond a hard cap of
 * that + CONN_MARGIN libmicrohttpd stops accepting), requests waiting for a scorer (503),
 * time per request (503, see "time limit" below). Every error is JSON {"error": MESSAGE}.
 *
 * Time limit: a request's deadline is --timeout seconds after its headers arrived. The
 * library has no hook to interrupt scoring midway, so the request is split into stages -
 * receiving the body (a body still arriving at the deadline: the connection is closed
 * without an answer), decoding the image, waiting for a scorer (bounded by the deadline
 * itself), the ViT forward pass (uf_scorer_extract), the kNN scoring (uf_score_features;
 * bit-identical to uf_score_images), the overlay - and the deadline is checked before and
 * after each: once it has passed, no further stage runs and the answer is 503. The time to
 * an answer is therefore at most --timeout plus one stage already under way (a decode, a
 * forward pass, a kNN search or an overlay of one image). Idle connections are closed
 * after --timeout (rounded up to whole seconds) by libmicrohttpd.
 * SIGTERM / SIGINT: stop listening, finish the requests in flight, exit 0.
 */
#include "cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *const help =
    "Usage: uniformaly serve MODEL.ufm --port N [options]\n"
    "\n"
    "Serve a model written by 'uniformaly fit' over HTTP/1.1:\n"
    "  POST /v1/predict   the image file's bytes (PNG, JPEG, BMP, PNM) as the body; answers\n"
    "                     predict --json's object {\"image\", \"score\", \"anomalous\",\n"
    "                     \"threshold\", \"heatmap\": null, \"map\": null}. Query: name=N (the\n"
    "                     \"image\" field, default \"-\"), overlay=1 (adds \"overlay_png\": the\n"
    "                     heatmap over the image as a base64 PNG)\n"
    "  GET /v1/health     {\"status\": \"ok\", \"workers\", \"busy\", \"queued\", \"served\"}\n"
    "  GET /v1/model      info --json's object\n"
    "Errors are JSON {\"error\": MESSAGE}: 400 bad image or empty body, 404, 405, 413 body\n"
    "or image too large, 503 overloaded (queue full, too many connections, or the request\n"
    "over its time limit).\n"
    "SIGTERM or SIGINT stops listening, finishes the requests in flight and exits 0.\n"
    "The listening address is printed on stderr (--port 0 picks a free port).\n"
    "\n"
    "Options:\n"
    "  --host H             address to listen on (default 127.0.0.1)\n"
    "  --port N             TCP port, 0..65535 (required; 0 = any free port)\n"
    "  --workers K          images scored in parallel (default: the number of cores);\n"
    "                       with K > 1 each scorer uses one thread\n"
    "  --queue Q            requests that may wait for a scorer before 503 (default 64)\n"
    "  --max-body BYTES     largest request body (default 33554432 = 32 MiB)\n"
    "  --max-pixels N       largest image, width * height (default 67108864)\n"
    "  --max-connections N  open connections at once (default 64); a connection opened\n"
    "                       beyond them gets 503 to its request and is closed (beyond\n"
    "                       N + 64 at once, connections wait unaccepted)\n"
    "  --timeout S          time limit per request in seconds, decimals allowed (default\n"
    "                       30), from its headers to its answer: upload, decode, the wait\n"
    "                       for a scorer and each scoring stage; past it the request gets\n"
    "                       503 when the stage under way ends (a stage is not interrupted:\n"
    "                       decode, ViT forward pass, kNN search, overlay), or, while its\n"
    "                       body is still arriving, its connection is closed. Idle\n"
    "                       connections are closed after S (rounded up to whole seconds)\n"
    "  --threshold T        decision threshold on the score (default: the model's, if any)\n"
    "  --backbone W         load this checkpoint instead of the recorded/embedded one\n"
    "  --allow-other-backbone\n"
    "  --threads N          compute threads with --workers 1 (default: all cores)\n"
    "  --quiet              no startup and shutdown lines on stderr\n";

/* connections accepted beyond --max-connections (each answered 503) before libmicrohttpd's
 * own limit makes further ones wait in the listen backlog */
#define CONN_MARGIN 64

typedef struct server {
    const char *model_path;
    uf_model *m;
    uf_scorer **scorers; /* [K]; free ones are scorers[0..nfree-1] */
    int K, nfree, queue_max;
    int waiting, inflight;
    int conns, max_conn; /* open connections, --max-connections */
    unsigned long served;
    double thr, timeout_s;
    cli_overlay_style style; /* of overlay=1: the model's scale and levels, fixed at start */
    size_t max_body;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a scorer came back, or a request finished */
} server;

typedef struct request {
    char *buf;
    size_t len, cap;
    bool too_large;
    double deadline; /* monotonic seconds: headers in + --timeout */
} request;

/* socket_context of a connection opened beyond --max-connections */
static char excess_tag;

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, cJSON *o)
{
    char *s = o ? cli_json_print(o) : NULL; /* names from the query may be any bytes */
    cJSON_Delete(o);
    if (!s) return MHD_NO; /* out of memory: drop the connection */
    size_t n = strlen(s);
    s[n] = '\n'; /* the terminating NUL becomes a final newline: curl-friendly */
    struct MHD_Response *r = MHD_create_response_from_buffer(n + 1, s, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(s); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", "application/json");
    /* an error may come before the body was read (413, 503): close rather than read on */
    if (code >= 400) MHD_add_response_header(r, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    if (o) cJSON_AddStringToObject(o, "error", msg);
    return reply(c, code, o);
}

static char *base64(const uint8_t *p, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc((n + 2) / 3 * 4 + 1), *q = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *q++ = t[v >> 18];
        *q++ = t[v >> 12 & 63];
        *q++ = i + 1 < n ? t[v >> 6 & 63] : '=';
        *q++ = i + 2 < n ? t[v & 63] : '=';
    }
    *q = '\0';
    return o;
}

/* The heatmap of a scored image over it, as a base64 PNG; NULL with uf_errmsg() set. */
/* The annotated overlay (predict --heatmap-dir's: the model's colour scale when calibrated,
 * score and decision, outline, the uninspected part greyed) as base64 PNG; NULL on error. */
static char *overlay_b64(const server *sv, const uf_image *img, const float *pmap, float score)
{
    uf_image *ov = NULL;
    uint8_t *png = NULL;
    size_t len = 0;
    char *b = NULL;
    if (cli_annotated_overlay(sv->m, pmap, img, &sv->style, score, NULL, &ov) == UF_OK &&
        uf_image_encode_png(ov, &png, &len) == UF_OK)
        b = base64(png, len);
    free(png);
    uf_image_free(ov);
    return b;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* 503 for a request past its deadline, naming the stage it did not start (the stages
 * before it ran), so a client and the tests can see what the limit saved */
#define OVER_TIME "overloaded: the request passed its time limit (--timeout) before "

/* Take a free scorer, waiting at most until the request's deadline; NULL (with *why) when
 * the queue is full or the deadline passed. */
static uf_scorer *take_scorer(server *sv, double deadline, const char **why)
{
    pthread_mutex_lock(&sv->mu);
    uf_scorer *s = NULL;
    if (sv->nfree == 0 && sv->waiting >= sv->queue_max) {
        *why = "overloaded: every worker is busy and the queue is full";
    } else {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        double left = deadline - now_s();
        double t = (double)dl.tv_sec + (double)dl.tv_nsec * 1e-9 + (left > 0 ? left : 0);
        dl.tv_sec = (time_t)t;
        dl.tv_nsec = (long)((t - (double)dl.tv_sec) * 1e9);
        sv->waiting++;
        int e = 0;
        while (sv->nfree == 0 && e != ETIMEDOUT) e = pthread_cond_timedwait(&sv->cv, &sv->mu, &dl);
        sv->waiting--;
        if (sv->nfree > 0) s = sv->scorers[--sv->nfree];
        else *why = "overloaded: no worker became free within the time limit (--timeout)";
    }
    pthread_mutex_unlock(&sv->mu);
    return s;
}

static void give_scorer(server *sv, uf_scorer *s)
{
    pthread_mutex_lock(&sv->mu);
    sv->scorers[sv->nfree++] = s;
    sv->served++;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
}

static bool truthy(const char *v) { return v && (!strcmp(v, "1") || !strcmp(v, "true")); }

/* Past the request's deadline? (checked between the stages of predict) */
static bool late(const request *rq) { return now_s() > rq->deadline; }

/* Score one image in stages, checking the deadline between them (see the top of the file):
 * extraction, then the kNN scoring of those features, which gives exactly what
 * uf_score_images gives. Past the deadline *skipped names the stage not started (else
 * NULL); the status is the library's own (UF_ERR_LIMIT: an image the geometry refuses),
 * UF_ERR_NOMEM without a message for the buffers here. */
static uf_status score_staged(server *sv, uf_scorer *sc, const uf_image *img, const request *rq,
                              uf_score *res, const char **skipped)
{
    int D;
    uf_model_output_size(sv->m, NULL, NULL, NULL, &D);
    size_t np = (size_t)uf_model_patch_rows(sv->m); /* tiled models: every tile's patches */
    float *feats = malloc(np * (size_t)D * sizeof(float)), *smooth = malloc(np * sizeof(float));
    uint8_t *mask = malloc(np);
    const uf_image *one[1] = {img};
    *skipped = NULL;
    uf_status st = !feats || !smooth || !mask ? UF_ERR_NOMEM : UF_OK;
    if (st == UF_OK && late(rq)) *skipped = "the ViT forward";
    if (st == UF_OK && !*skipped) st = uf_scorer_extract(sc, one, 1, feats, smooth, mask);
    if (st == UF_OK && late(rq)) *skipped = "the kNN search";
    if (st == UF_OK && !*skipped) st = uf_score_features(sc, feats, smooth, mask, 1, res);
    free(feats);
    free(smooth);
    free(mask);
    return st;
}

static enum MHD_Result predict(server *sv, struct MHD_Connection *c, const request *rq)
{
    if (rq->too_large)
        return reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "body larger than %zu bytes (--max-body)", sv->max_body);
    if (rq->len == 0) return reply_error(c, MHD_HTTP_BAD_REQUEST, "empty body: send the image file's bytes");
    if (late(rq)) return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, OVER_TIME "decoding");
    const char *name = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "name");
    bool overlay = truthy(MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "overlay"));
    uf_image *img = NULL;
    uf_status st = uf_image_decode(rq->buf, rq->len, &img);
    if (st != UF_OK)
        return reply_error(c, st == UF_ERR_LIMIT ? MHD_HTTP_CONTENT_TOO_LARGE : MHD_HTTP_BAD_REQUEST,
                           "%s", uf_errmsg());
    const char *why = NULL;
    uf_scorer *sc = late(rq) ? (why = OVER_TIME "scoring", NULL) : take_scorer(sv, rq->deadline, &why);
    if (!sc) {
        uf_image_free(img);
        return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "%s", why);
    }
    int S;
    uf_model_output_size(sv->m, NULL, NULL, &S, NULL);
    float *pmap = overlay ? malloc((size_t)S * (size_t)S * sizeof(float)) : NULL;
    uf_score res = {0};
    res.pixel_map = pmap;
    const char *skipped = NULL;
    st = overlay && !pmap ? UF_ERR_NOMEM : score_staged(sv, sc, img, rq, &res, &skipped);
    give_scorer(sv, sc);
    if (st == UF_OK && !skipped && late(rq)) skipped = overlay ? "the overlay" : "the answer";
    enum MHD_Result ret;
    if (skipped) {
        ret = reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, OVER_TIME "%s", skipped);
    } else if (st == UF_ERR_LIMIT) { /* e.g. an image too elongated for the model's geometry */
        ret = reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "%s", uf_errmsg());
    } else if (st != UF_OK) {
        ret = reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s",
                          st == UF_ERR_NOMEM ? "out of memory" : uf_errmsg());
    } else {
        cJSON *o = cli_result_json(name ? name : "-", res.score, sv->thr, NULL, NULL);
        char *b = overlay ? overlay_b64(sv, img, pmap, res.score) : NULL;
        if (overlay && !b) {
            cJSON_Delete(o);
            ret = reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "overlay: %s", uf_errmsg());
        } else if (overlay && late(rq)) {
            cJSON_Delete(o);
            ret = reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, OVER_TIME "the answer");
        } else {
            if (b && o) cJSON_AddStringToObject(o, "overlay_png", b);
            ret = reply(c, MHD_HTTP_OK, o);
        }
        free(b);
    }
    free(pmap);
    uf_image_free(img);
    return ret;
}

static enum MHD_Result route(server *sv, struct MHD_Connection *c, const char *url,
                             const char *method, const request *rq)
{
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/v1/predict")) {
        if (post) return predict(sv, c, rq);
    } else if (!strcmp(url, "/v1/health")) {
        if (get) {
            cJSON *o = cJSON_CreateObject();
            pthread_mutex_lock(&sv->mu);
            cJSON_AddStringToObject(o, "status", "ok");
            cJSON_AddNumberToObject(o, "workers", sv->K);
            cJSON_AddNumberToObject(o, "busy", sv->K - sv->nfree);
            cJSON_AddNumberToObject(o, "queued", sv->waiting);
            cJSON_AddNumberToObject(o, "served", (double)sv->served);
            pthread_mutex_unlock(&sv->mu);
            return reply(c, MHD_HTTP_OK, o);
        }
    } else if (!strcmp(url, "/v1/model")) {
        if (get) return reply(c, MHD_HTTP_OK, cli_model_json(sv->model_path, sv->m));
    } else {
        return reply_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint: %s (try /v1/predict, /v1/health, /v1/model)", url);
    }
    return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "%s does not take %s", url, method);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *data, size_t *data_size, void **con_cls)
{
    server *sv = cls;
    request *rq = *con_cls;
    if (!rq) { /* headers are in: the request starts */
        if (!(rq = calloc(1, sizeof *rq))) return MHD_NO;
        *con_cls = rq;
        rq->deadline = now_s() + sv->timeout_s;
        pthread_mutex_lock(&sv->mu);
        sv->inflight++;
        pthread_mutex_unlock(&sv->mu);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        if (ci && ci->socket_context == &excess_tag)
            return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                               "overloaded: more than %d connections open (--max-connections)", sv->max_conn);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > sv->max_body) { /* refuse before reading it */
            rq->too_large = true;
            return predict(sv, c, rq);
        }
        return MHD_YES;
    }
    if (*data_size) { /* a piece of the body */
        size_t n = *data_size;
        *data_size = 0;
        if (late(rq)) /* a body still arriving at the deadline: the connection is closed */
            return MHD_NO;
        if (rq->too_large || rq->len + n > sv->max_body) {
            rq->too_large = true;
            free(rq->buf);
            rq->buf = NULL;
            rq->len = rq->cap = 0;
            return MHD_YES;
        }
        if (rq->len + n > rq->cap) {
            size_t cap = rq->cap ? rq->cap : 65536;
            while (cap < rq->len + n) cap *= 2;
            char *b = realloc(rq->buf, cap);
            if (!b) return MHD_NO;
            rq->buf = b;
            rq->cap = cap;
        }
        memcpy(rq->buf + rq->len, data, n);
        rq->len += n;
        return MHD_YES;
    }
    return route(sv, c, url, method, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    server *sv = cls;
    request *rq = *con_cls;
    if (!rq) return;
    free(rq->buf);
    free(rq);
    *con_cls = NULL;
    pthread_mutex_lock(&sv->mu);
    sv->inflight--;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
}

/* Count open connections; one opened while --max-connections are open is marked, and its
 * request gets 503 (on_request). */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    server *sv = cls;
    pthread_mutex_lock(&sv->mu);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        if (sv->conns >= sv->max_conn) *socket_context = &excess_tag;
        else sv->conns++;
    } else if (*socket_context != &excess_tag) {
        sv->conns--;
    }
    pthread_mutex_unlock(&sv->mu);
}

typedef struct serve_opts {
    const char *host, *model;
    long port, workers, queue, max_conn;
    long long max_body, max_pixels;
    double thr, timeout;
} serve_opts;

/* Parse the options; returns -1 to go on, else the exit status. */
static int parse(int argc, char **argv, serve_opts *o, cli_common *c, uf_model_load_params *lp)
{
    const char *verb = "serve";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        static const struct { const char *name; long lo, hi; } lims[] = {
            {"--port", 0, 65535}, {"--workers", 1, 256}, {"--queue", 0, 100000},
            {"--max-connections", 1, 100000}, {"--threads", 0, 1024},
            {"--max-body", 1, 1L << 40}, {"--max-pixels", 1, 1L << 40}};
        long *dst[] = {&o->port, &o->workers, &o->queue, &o->max_conn, NULL, NULL, NULL};
        int k = -1;
        for (int j = 0; j < (int)(sizeof lims / sizeof *lims); j++)
            if (!strcmp(a, lims[j].name)) k = j;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(help, stdout);
            return 0;
        } else if (k >= 0) {
            long n;
            if (i + 1 >= argc || !cli_parse_int(argv[i + 1], lims[k].lo, lims[k].hi, &n))
                return cli_usage_error(verb, "%s: expected an integer in %ld..%ld", a, lims[k].lo, lims[k].hi);
            i++;
            if (dst[k]) *dst[k] = n;
            else if (k == 4) c->threads = (int)n;
            else if (k == 5) o->max_body = n;
            else o->max_pixels = n;
        } else if (!strcmp(a, "--host") || !strcmp(a, "--backbone")) {
            if (i + 1 >= argc) return cli_usage_error(verb, "option %s needs a value", a);
            if (a[2] == 'h') o->host = argv[++i];
            else lp->backbone_path = argv[++i];
        } else if (!strcmp(a, "--threshold")) {
            if (i + 1 >= argc || !cli_parse_float(argv[i + 1], -1e30, 1e30, &o->thr))
                return cli_usage_error(verb, "--threshold: expected a number");
            i++;
        } else if (!strcmp(a, "--timeout")) {
            if (i + 1 >= argc || !cli_parse_float(argv[i + 1], 0.001, 86400, &o->timeout))
                return cli_usage_error(verb, "--timeout: expected seconds in 0.001..86400");
            i++;
        } else if (!strcmp(a, "--allow-other-backbone")) {
            lp->allow_other_backbone = 1;
        } else if (!strcmp(a, "--quiet")) {
            c->quiet = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(verb, "unknown option '%s'", a);
        } else if (!o->model) {
            o->model = a;
        } else {
            return cli_usage_error(verb, "unexpected argument '%s'", a);
        }
    }
    if (!o->model) return cli_usage_error(verb, "no model file given");
    if (o->port < 0) return cli_usage_error(verb, "--port is required");
    return -1;
}

int cmd_serve(int argc, char **argv)
{
    cli_common c;
    cli_common_init(&c);
    uf_model_load_params lp = uf_model_load_default_params();
    serve_opts o = {"127.0.0.1", NULL, -1, 0, 64, 64, 32LL << 20, 64LL << 20, NAN, 30};
    int rc = parse(argc, argv, &o, &c, &lp);
    if (rc >= 0) return rc;

    if (o.workers == 0) o.workers = uf_get_threads();
    const int threads = o.workers > 1 ? 1 : c.threads; /* K scorers at once: one thread each */
    uf_set_max_pixels((size_t)o.max_pixels);

    server sv = {.model_path = o.model, .queue_max = (int)o.queue, .timeout_s = o.timeout,
                 .max_body = (size_t)o.max_body, .max_conn = (int)o.max_conn};
    pthread_mutex_init(&sv.mu, NULL);
    pthread_cond_init(&sv.cv, NULL);
    struct MHD_Daemon *d = NULL;
    struct addrinfo *ai = NULL;
    rc = CLI_EXIT_RUNTIME;
    if (cli_model_load(o.model, &lp, &sv.m) != UF_OK) { cli_error("%s", uf_errmsg()); goto done; }
    if (!isfinite(o.thr)) {
        uf_model_info mi;
        uf_model_get_info(sv.m, &mi);
        o.thr = mi.threshold;
    }
    sv.thr = o.thr;
    const float no_range[2] = {0, 0};
    cli_overlay_style_init(&sv.style, no_range, sv.thr, false, sv.m);
    if (!(sv.scorers = calloc((size_t)o.workers, sizeof *sv.scorers))) { cli_error("out of memory"); goto done; }
    for (sv.K = 0; sv.K < o.workers; sv.K++) {
        if (uf_scorer_new(sv.m, &sv.scorers[sv.K]) != UF_OK) { cli_error("%s", uf_errmsg()); goto done; }
        uf_scorer_set_threads(sv.scorers[sv.K], threads);
    }
    sv.nfree = sv.K;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    char port[16];
    snprintf(port, sizeof port, "%ld", o.port);
    int e = getaddrinfo(o.host, port, &hints, &ai);
    if (e != 0) { cli_error("--host %s: %s", o.host, gai_strerror(e)); goto done; }

    /* SIGTERM / SIGINT are taken by sigwait below: blocked here, before any thread
     * starts, so no connection thread receives them */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    d = MHD_start_daemon(flags, (uint16_t)o.port, NULL, NULL, on_request, &sv,
                         MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)(o.max_conn + CONN_MARGIN),
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)ceil(o.timeout),
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, &sv,
                         MHD_OPTION_NOTIFY_CONNECTION, on_connection, &sv, MHD_OPTION_END);
    if (!d) {
        cli_error("cannot listen on %s port %ld: %s", o.host, o.port, errno ? strerror(errno) : "libmicrohttpd failed");
        goto done;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (!c.quiet)
        fprintf(stderr, "uniformaly serve: listening on http://%s:%u/ (%d workers, model %s)\n",
                o.host, di ? (unsigned)di->port : (unsigned)o.port, sv.K, o.model);
    int sig = 0;
    sigwait(&sigs, &sig);
    /* stop accepting, let every request in flight finish, then stop */
    double t0 = now_s();
    MHD_socket ls = MHD_quiesce_daemon(d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    pthread_mutex_lock(&sv.mu);
    while (sv.inflight > 0) pthread_cond_wait(&sv.cv, &sv.mu);
    unsigned long served = sv.served;
    pthread_mutex_unlock(&sv.mu);
    MHD_stop_daemon(d);
    d = NULL;
    if (!c.quiet)
        fprintf(stderr, "uniformaly serve: %s: stopped after %lu requests (%.2f s to finish those in flight)\n",
                strsignal(sig), served, now_s() - t0);
    rc = 0;
done:
    if (d) MHD_stop_daemon(d);
    if (ai) freeaddrinfo(ai);
    for (int k = 0; k < sv.K; k++) uf_scorer_free(sv.scorers[k]);
    free(sv.scorers);
    uf_model_free(sv.m);
    pthread_cond_destroy(&sv.cv);
    pthread_mutex_destroy(&sv.mu);
    return rc;
}
