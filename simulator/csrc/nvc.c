/* Version, context, library configuration, errors and option parsing. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvc_internal.h"

static const struct nvc_version version = {NVC_MAJOR, NVC_MINOR, NVC_PATCH, NVC_VERSION};

static const struct nvc_option library_opts[] = {
    {"load-kmods", OPT_LOAD_KMODS},
#if NVC_AT_LEAST(1, 17, 0)
    {"no-create-imex-channels", OPT_NO_CREATE_IMEX_CHANNELS},
#endif
};

void nvc_err_reset(struct nvc_err *err)
{
    free(err->msg);
    err->msg = NULL;
    err->code = 0;
}

static void err_vset(struct nvc_err *err, int code, const char *fmt, va_list ap)
{
    char *msg = NULL, *full = NULL;

    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    if (msg != NULL && code != 0) {
        if (asprintf(&full, "%s: %s", msg, strerror(code)) < 0)
            full = NULL;
        free(msg);
        msg = full;
    }
    free(err->msg);
    err->msg = msg;
    err->code = code != 0 ? code : -1;
}

void nvc_err_setx(struct nvc_err *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    err_vset(err, 0, fmt, ap);
    va_end(ap);
}

void nvc_err_set(struct nvc_err *err, const char *fmt, ...)
{
    int code = errno;
    va_list ap;

    va_start(ap, fmt);
    err_vset(err, code != 0 ? code : EIO, fmt, ap);
    va_end(ap);
}

int nvc_validate_context(struct nvc_context *ctx)
{
    if (ctx == NULL)
        return -1;
    if (!ctx->initialized) {
        nvc_err_setx(&ctx->err, "context uninitialized");
        return -1;
    }
    return 0;
}

int nvc_validate_args(struct nvc_context *ctx, bool predicate)
{
    if (!predicate) {
        nvc_err_setx(&ctx->err, "invalid argument");
        return -1;
    }
    return 0;
}

int nvc_options_parse(struct nvc_err *err, const char *str, const struct nvc_option *opts, size_t n)
{
    char buf[NVC_ARG_MAX], *ptr = buf, *opt;
    int flags = 0;
    size_t i;

    if (strlen(str) >= sizeof(buf)) {
        nvc_err_setx(err, "too many options");
        return -1;
    }
    strcpy(buf, str);
    while ((opt = strsep(&ptr, " ")) != NULL) {
        if (*opt == '\0')
            continue;
        for (i = 0; i < n; ++i) {
            if (strcmp(opt, opts[i].name) == 0) {
                flags |= opts[i].value;
                break;
            }
        }
        if (i == n) {
            nvc_err_setx(err, "invalid option: %s", opt);
            return -1;
        }
    }
    return flags;
}

char *nvc_xstrdup(struct nvc_err *err, const char *s)
{
    char *copy = strdup(s);

    if (copy == NULL)
        nvc_err_set(err, "memory allocation failed");
    return copy;
}

char *nvc_xasprintf(struct nvc_err *err, const char *fmt, ...)
{
    char *out = NULL;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&out, fmt, ap);
    va_end(ap);
    if (n < 0) {
        nvc_err_set(err, "memory allocation failed");
        return NULL;
    }
    return out;
}

void nvc_strv_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; ++i)
        free(v[i]);
    free(v);
}

const struct nvc_version *nvc_version(void)
{
    return &version;
}

struct nvc_config *nvc_config_new(void)
{
    struct nvc_config *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL)
        return NULL;
    cfg->uid = (uid_t)-1;
    cfg->gid = (gid_t)-1;
    return cfg;
}

void nvc_config_free(struct nvc_config *cfg)
{
    free(cfg);
}

struct nvc_context *nvc_context_new(void)
{
    return calloc(1, sizeof(struct nvc_context));
}

static void context_release(struct nvc_context *ctx)
{
    free(ctx->root);
    free(ctx->ldcache);
    ctx->root = ctx->ldcache = NULL;
#if NVC_HAS_IMEX
    free(ctx->imex.chans);
    ctx->imex.chans = NULL;
    ctx->imex.nchans = 0;
#endif
    ctx->initialized = false;
}

void nvc_context_free(struct nvc_context *ctx)
{
    if (ctx == NULL)
        return;
    context_release(ctx);
    nvc_err_reset(&ctx->err);
    free(ctx);
}

static bool set_but_empty(const char *s)
{
    return s != NULL && *s == '\0';
}

static int copy_config(struct nvc_context *ctx, const struct nvc_config *cfg)
{
    const char *root = cfg->root != NULL ? cfg->root : "/";

    if ((ctx->root = nvc_xstrdup(&ctx->err, root)) == NULL)
        return -1;
    if ((ctx->ldcache = nvc_xstrdup(&ctx->err, cfg->ldcache != NULL ? cfg->ldcache : "/etc/ld.so.cache")) == NULL)
        return -1;
    ctx->uid = cfg->uid != (uid_t)-1 ? cfg->uid : 65534;
    ctx->gid = cfg->gid != (gid_t)-1 ? cfg->gid : 65534;
#if NVC_HAS_IMEX
    if (cfg->imex.nchans > 0 && cfg->imex.chans != NULL) {
        ctx->imex.chans = calloc(cfg->imex.nchans, sizeof(*ctx->imex.chans));
        if (ctx->imex.chans == NULL) {
            nvc_err_set(&ctx->err, "memory allocation failed");
            return -1;
        }
        memcpy(ctx->imex.chans, cfg->imex.chans, cfg->imex.nchans * sizeof(*ctx->imex.chans));
        ctx->imex.nchans = cfg->imex.nchans;
    }
#endif
    return 0;
}

int nvc_init(struct nvc_context *ctx, const struct nvc_config *cfg, const char *opts)
{
    struct nvc_config defaults = {.root = NULL, .ldcache = NULL, .uid = (uid_t)-1, .gid = (gid_t)-1};
    char message[1024];
    int flags;

    if (ctx == NULL)
        return -1;
    if (ctx->initialized)
        return 0;
    if (cfg == NULL)
        cfg = &defaults;
    if (nvc_validate_args(ctx, !set_but_empty(cfg->ldcache) && !set_but_empty(cfg->root)) < 0)
        return -1;
    if (opts == NULL)
        opts = "";
    if ((flags = nvc_options_parse(&ctx->err, opts, library_opts,
                                   sizeof(library_opts) / sizeof(library_opts[0]))) < 0)
        return -1;

    /* Where the real library would start its driver RPC service (and fail with the driver's
       message on a flaky host), the simulated host's faults decide. */
    if (nvc_sim_init_fault(message, sizeof(message))) {
        nvc_err_setx(&ctx->err, "%s", message);
        return -1;
    }
    if (copy_config(ctx, cfg) < 0) {
        context_release(ctx);
        return -1;
    }
    ctx->flags = flags;
    ctx->initialized = true;
    return 0;
}

int nvc_shutdown(struct nvc_context *ctx)
{
    if (ctx == NULL)
        return -1;
    if (!ctx->initialized)
        return 0;
    context_release(ctx);
    return 0;
}

const char *nvc_error(struct nvc_context *ctx)
{
    if (ctx == NULL)
        return NULL;
    if (ctx->err.code != 0 && ctx->err.msg == NULL)
        return "unknown error";
    return ctx->err.msg;
}
