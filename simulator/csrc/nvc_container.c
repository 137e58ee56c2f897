/* Container configuration: what the real library records about the container it prepares. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nvc_fs.h"
#include "nvc_internal.h"

static const struct nvc_option container_opts[] = {
    {"supervised", OPT_SUPERVISED},
    {"standalone", OPT_STANDALONE},
    {"no-cgroups", OPT_NO_CGROUPS},
    {"no-devbind", OPT_NO_DEVBIND},
#if !NVC_HAS_COMPAT_MODE
    {"no-cntlibs", OPT_NO_CNTLIBS},
#endif
    {"utility", OPT_UTILITY_BINS | OPT_UTILITY_LIBS},
    {"compute", OPT_COMPUTE_BINS | OPT_COMPUTE_LIBS},
    {"video", OPT_VIDEO_LIBS | OPT_COMPUTE_LIBS},
    {"graphics", OPT_GRAPHICS_LIBS},
    {"display", OPT_DISPLAY | OPT_GRAPHICS_LIBS | OPT_DISPLAY_LIBS},
    {"ngx", OPT_NGX_LIBS},
    {"compat32", OPT_COMPAT32},
#if NVC_HAS_COMPAT_MODE
    {"cuda-compat-mode=disabled", OPT_CUDA_COMPAT_MODE_DISABLED},
    {"cuda-compat-mode=mount", OPT_CUDA_COMPAT_MODE_MOUNT},
    {"cuda-compat-mode=ldconfig", OPT_CUDA_COMPAT_MODE_LDCONFIG},
#endif
};

static const char default_container_opts[] = "standalone no-cgroups no-devbind utility";

struct nvc_container_config *nvc_container_config_new(pid_t pid, const char *rootfs)
{
    struct nvc_container_config *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL)
        return NULL;
    cfg->pid = pid;
    /* Borrowed, like the real library: copied only by nvc_container_new. */
    cfg->rootfs = (char *)rootfs;
    return cfg;
}

void nvc_container_config_free(struct nvc_container_config *cfg)
{
    free(cfg);
}

void nvc_container_free(struct nvc_container *cnt)
{
    if (cnt == NULL)
        return;
    free(cnt->rootfs);
    free(cnt->bins_dir);
    free(cnt->libs_dir);
    free(cnt->libs32_dir);
    free(cnt->cudart_dir);
    free(cnt->ldconfig);
    free(cnt->cuda_compat_dir);
    if (cnt->mnt_ns >= 0)
        close(cnt->mnt_ns);
    free(cnt);
}

static bool set_but_empty(const char *s)
{
    return s != NULL && *s == '\0';
}

/* Whether rel exists inside the rootfs (resolved in it, as everything inside it is). */
static int exists_in_rootfs(struct nvc_err *err, const char *rootfs, const char *rel)
{
    int root, fd, found;

    if ((root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
        nvc_err_set(err, "open failed: %s", rootfs);
        return -1;
    }
    fd = nvc_open_in_root(root, rel, O_PATH, 0);
    found = fd >= 0;
    if (fd >= 0)
        close(fd);
    close(root);
    return found;
}

static int validate_compat_mode(struct nvc_err *err, int *flags)
{
    if (*flags & OPT_CUDA_COMPAT_MODE_DISABLED) {
        *flags &= ~(OPT_CUDA_COMPAT_MODE_MOUNT | OPT_CUDA_COMPAT_MODE_LDCONFIG);
        return 0;
    }
    if ((*flags & OPT_CUDA_COMPAT_MODE_MOUNT) && (*flags & OPT_CUDA_COMPAT_MODE_LDCONFIG)) {
        nvc_err_setx(err, "only one cuda-compat-mode can be specified at a time");
        return -1;
    }
    return 0;
}

static int copy_config(struct nvc_err *err, struct nvc_container *cnt, const struct nvc_container_config *cfg)
{
    const char *libs_dir = cfg->libs_dir, *libs32_dir = cfg->libs32_dir;
    int multiarch = 0;

    if (libs_dir == NULL || libs32_dir == NULL) {
        /* Debian and its derivatives use a multiarch directory scheme. */
        if ((multiarch = exists_in_rootfs(err, cfg->rootfs, "/etc/debian_version")) < 0)
            return -1;
        if (libs_dir == NULL)
            libs_dir = multiarch ? "/usr/lib/x86_64-linux-gnu" : "/usr/lib64";
        if (libs32_dir == NULL)
            libs32_dir = multiarch ? "/usr/lib/i386-linux-gnu" : "/usr/lib32";
    }
    if ((cnt->rootfs = nvc_xstrdup(err, cfg->rootfs)) == NULL ||
        (cnt->bins_dir = nvc_xstrdup(err, cfg->bins_dir != NULL ? cfg->bins_dir : "/usr/bin")) == NULL ||
        (cnt->libs_dir = nvc_xstrdup(err, libs_dir)) == NULL ||
        (cnt->libs32_dir = nvc_xstrdup(err, libs32_dir)) == NULL ||
        (cnt->cudart_dir = nvc_xstrdup(err, cfg->cudart_dir != NULL ? cfg->cudart_dir : "/usr/local/cuda")) == NULL ||
        (cnt->ldconfig = nvc_xstrdup(err, cfg->ldconfig != NULL ? cfg->ldconfig : NVC_DEFAULT_LDCONFIG)) == NULL)
        return -1;
    /* Only named here: whether the image's compat directory qualifies is decided inside the
       container's namespace when the ld cache is built (nvc_ldcache.c). */
    if ((cnt->flags & OPT_CUDA_COMPAT_MODE_LDCONFIG) &&
        (cnt->cuda_compat_dir = nvc_xasprintf(err, "%s/compat", cnt->cudart_dir)) == NULL)
        return -1;
    return 0;
}

struct nvc_container *nvc_container_new(struct nvc_context *ctx, const struct nvc_container_config *cfg,
                                        const char *opts)
{
    struct nvc_container *cnt;
    char path[64];
    struct stat s;
    int flags;

    if (nvc_validate_context(ctx) < 0)
        return NULL;
    if (nvc_validate_args(ctx, cfg != NULL && cfg->pid > 0 && cfg->rootfs != NULL && cfg->rootfs[0] == '/' &&
                                   !set_but_empty(cfg->bins_dir) && !set_but_empty(cfg->libs_dir) &&
                                   !set_but_empty(cfg->libs32_dir) && !set_but_empty(cfg->cudart_dir) &&
                                   !set_but_empty(cfg->ldconfig)) < 0)
        return NULL;
    if (opts == NULL)
        opts = default_container_opts;
    if ((flags = nvc_options_parse(&ctx->err, opts, container_opts,
                                   sizeof(container_opts) / sizeof(container_opts[0]))) < 0)
        return NULL;
    if ((!(flags & OPT_SUPERVISED) ^ !(flags & OPT_STANDALONE)) == 0) {
        nvc_err_setx(&ctx->err, "invalid mode of operation");
        return NULL;
    }
    if (validate_compat_mode(&ctx->err, &flags) < 0)
        return NULL;

    if ((cnt = calloc(1, sizeof(*cnt))) == NULL) {
        nvc_err_set(&ctx->err, "memory allocation failed");
        return NULL;
    }
    cnt->mnt_ns = -1;
    cnt->flags = flags;
    cnt->pid = cfg->pid;
    if (copy_config(&ctx->err, cnt, cfg) < 0)
        goto fail;

    snprintf(path, sizeof(path), "/proc/%d", (int)cfg->pid);
    if (stat(path, &s) < 0) {
        nvc_err_set(&ctx->err, "stat failed: %s", path);
        goto fail;
    }
    cnt->uid = s.st_uid;
    cnt->gid = s.st_gid;
    /* Held from now on, so a recycled pid cannot redirect the mounts into another process. */
    snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)cfg->pid);
    if ((cnt->mnt_ns = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        nvc_err_set(&ctx->err, "open failed: %s", path);
        goto fail;
    }
    return cnt;

fail:
    nvc_container_free(cnt);
    return NULL;
}
