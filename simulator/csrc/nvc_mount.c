/* Mounting driver files, device nodes and MIG capabilities into a container.
 *
 * Each call builds a plan (plain data) in the caller, then a child runs it: host sources are
 * opened as detached bind-mount clones BEFORE joining the container's mount namespace, targets
 * are resolved and created INSIDE the rootfs only (nvc_fs.h), and every clone is attached to an
 * O_PATH fd of its target. Targets created by the library land in the container's writable
 * layer (or in tmpfs mounts of its own), never in the image it was started from.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "nvc_fs.h"
#include "nvc_info.h"
#include "nvc_internal.h"
#include "nvc_ns.h"

#define TMPFS_MAGIC_ 0x01021994
#define PROC_MAGIC_ 0x9fa0

#define ATTRS_FILE (NVC_MNT_RDONLY | NVC_MNT_NODEV | NVC_MNT_NOSUID)
#define ATTRS_DEVICE (NVC_MNT_RDONLY | NVC_MNT_NOSUID | NVC_MNT_NOEXEC)
#define ATTRS_PROC (NVC_MNT_RDONLY | NVC_MNT_NODEV | NVC_MNT_NOSUID | NVC_MNT_NOEXEC)
#define ATTRS_IPC (NVC_MNT_NODEV | NVC_MNT_NOSUID | NVC_MNT_NOEXEC)
#define ATTRS_DEVDIR (NVC_MNT_NOSUID | NVC_MNT_NOEXEC)

enum item_kind {
    ITEM_BIND,        /* bind src (host) at dst (container) */
    ITEM_SYMLINK,     /* dst/name -> src, inside the container */
    ITEM_PROC_DRIVER, /* a tmpfs of ours at /proc/driver/nvidia, seeded like the real one */
};

struct item {
    enum item_kind kind;
    char *src;
    char *dst;
    char *name;
    uint64_t attrs;
    bool check_rdev;
    dev_t rdev;
    /* Filled in by the child before it joins the container. */
    int tree;
    mode_t mode;
};

struct plan {
    struct item *items;
    size_t n, cap;
    const char *root; /* the context's driver root */
    int seeds[3];     /* params, version, registry of the host's /proc/driver/nvidia, or -1 */
};

static const char *const proc_seed_files[3] = {"params", "version", "registry"};

static void plan_free(struct plan *p)
{
    for (size_t i = 0; i < p->n; ++i) {
        free(p->items[i].src);
        free(p->items[i].dst);
        free(p->items[i].name);
    }
    free(p->items);
}

/* Takes ownership of src/dst/name (NULL allowed where unused). */
static int plan_add(struct nvc_err *err, struct plan *p, enum item_kind kind, char *src, char *dst, char *name,
                    uint64_t attrs)
{
    struct item *grown;

    if ((kind == ITEM_BIND && (src == NULL || dst == NULL)) ||
        (kind == ITEM_SYMLINK && (src == NULL || dst == NULL || name == NULL)))
        goto fail;
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        if ((grown = realloc(p->items, p->cap * sizeof(*grown))) == NULL) {
            nvc_err_set(err, "memory allocation failed");
            goto fail;
        }
        p->items = grown;
    }
    p->items[p->n++] = (struct item){kind, src, dst, name, attrs, false, 0, -1, 0};
    return 0;

fail:
    free(src);
    free(dst);
    free(name);
    return -1;
}

/* Bind a path the library reported (host path or container-style) at its container path. */
static int plan_bind_reported(struct nvc_err *err, struct plan *p, const char *path, uint64_t attrs)
{
    char *src = nvc_host_path(err, p->root, path);

    if (src == NULL)
        return -1;
    return plan_add(err, p, ITEM_BIND, src, nvc_xstrdup(err, nvc_container_path(p->root, src)), NULL, attrs);
}

static int plan_device(struct nvc_err *err, struct plan *p, const struct nvc_device_node *node)
{
    if (plan_bind_reported(err, p, node->path, ATTRS_DEVICE) < 0)
        return -1;
    p->items[p->n - 1].check_rdev = true;
    p->items[p->n - 1].rdev = node->id;
    return 0;
}

static int plan_proc_driver(struct nvc_err *err, struct plan *p)
{
    for (size_t i = 0; i < p->n; ++i) {
        if (p->items[i].kind == ITEM_PROC_DRIVER)
            return 0;
    }
    return plan_add(err, p, ITEM_PROC_DRIVER, NULL, NULL, NULL, 0);
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash != NULL ? slash + 1 : path;
}

/* Driver files selected by the container's capabilities, bound under dir by base name. */
static int plan_files(struct nvc_err *err, struct plan *p, const struct nvc_container *cnt, const char *dir,
                      char *const files[], size_t n)
{
    const char *base;

    for (size_t i = 0; i < n; ++i) {
        base = base_name(files[i]);
        if (!(nvc_file_flags(base) & cnt->flags))
            continue;
        if (plan_add(err, p, ITEM_BIND, nvc_host_path(err, p->root, files[i]),
                     nvc_xasprintf(err, "%s/%s", dir, base), NULL, ATTRS_FILE) < 0)
            return -1;
    }
    return 0;
}

/* The compatibility links the real library adds next to the libraries it mounted. */
static int plan_symlinks(struct nvc_err *err, struct plan *p, const char *dir, size_t from)
{
    size_t n = p->n;
    const char *lib;

    for (size_t i = from; i < n; ++i) {
        if (p->items[i].kind != ITEM_BIND)
            continue;
        lib = base_name(p->items[i].dst);
        if (strncmp(lib, "libcuda.so", 10) == 0) {
            if (plan_add(err, p, ITEM_SYMLINK, nvc_xstrdup(err, "libcuda.so.1"), nvc_xstrdup(err, dir),
                         nvc_xstrdup(err, "libcuda.so"), 0) < 0)
                return -1;
        } else if (strncmp(lib, "libGLX_nvidia.so", 16) == 0) {
            if (plan_add(err, p, ITEM_SYMLINK, nvc_xstrdup(err, lib), nvc_xstrdup(err, dir),
                         nvc_xstrdup(err, "libGLX_indirect.so.0"), 0) < 0)
                return -1;
        } else if (strncmp(lib, "libnvidia-opticalflow.so", 24) == 0) {
            if (plan_add(err, p, ITEM_SYMLINK, nvc_xstrdup(err, "libnvidia-opticalflow.so.1"), nvc_xstrdup(err, dir),
                         nvc_xstrdup(err, "libnvidia-opticalflow.so"), 0) < 0)
                return -1;
        }
    }
    return 0;
}

/* Child, on the host: open every source (and check device nodes are what was reported). */
static int plan_open_host(void *arg, struct nvc_err *err)
{
    struct plan *p = arg;
    struct item *it;
    struct stat s;
    char path[4096];

    for (size_t i = 0; i < 3; ++i)
        p->seeds[i] = -1;
    for (size_t i = 0; i < p->n; ++i) {
        it = &p->items[i];
        if (it->kind == ITEM_PROC_DRIVER) {
            for (size_t j = 0; j < 3; ++j) {
                char *src = nvc_host_path(err, p->root, NVC_PROC_DRIVER);

                if (src == NULL)
                    return -1;
                snprintf(path, sizeof(path), "%s/%s", src, proc_seed_files[j]);
                free(src);
                p->seeds[j] = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            }
            continue;
        }
        if (it->kind != ITEM_BIND)
            continue;
        if (stat(it->src, &s) < 0) {
            nvc_err_set(err, "stat failed: %s", it->src);
            return -1;
        }
        if (it->check_rdev && (!S_ISCHR(s.st_mode) || s.st_rdev != it->rdev)) {
            nvc_err_setx(err, "invalid device node: %s", it->src);
            return -1;
        }
        it->mode = s.st_mode;
        if ((it->tree = nvc_clone_tree(it->src, it->attrs)) < 0) {
            nvc_err_set(err, "mount operation failed: %s", it->src);
            return -1;
        }
    }
    return 0;
}

static int copy_fd_into(int src, int dir, const char *name)
{
    char buf[16384], *param;
    ssize_t n;
    int dst, rv = 0;

    if ((n = pread(src, buf, sizeof(buf), 0)) < 0)
        return -1;
    if ((dst = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444)) < 0)
        return errno == EEXIST ? 0 : -1;
    /* Keep NVRM from adjusting device nodes from inside, as the real library does. */
    if ((param = memmem(buf, (size_t)n, "ModifyDeviceFiles: 1", 20)) != NULL)
        param[19] = '0';
    if (write(dst, buf, (size_t)n) != n)
        rv = -1;
    close(dst);
    return rv;
}

/* /proc/driver/nvidia in the container: a tmpfs of ours (the container's procfs cannot hold
   files), made once and kept for the later calls that add capability files to it. */
static int ensure_proc_driver(struct plan *p, int root, struct nvc_err *err)
{
    int fd, tree, parent;

    fd = nvc_open_in_root(root, NVC_PROC_DRIVER, O_PATH | O_DIRECTORY, 0);
    if (fd >= 0 && nvc_fs_magic(fd) == TMPFS_MAGIC_)
        goto seed;
    if (fd < 0) {
        if (errno != ENOENT) {
            nvc_err_set(err, "open failed: %s", NVC_PROC_DRIVER);
            return -1;
        }
        parent = nvc_open_in_root(root, "/proc/driver", O_PATH | O_DIRECTORY, 0);
        if (parent >= 0 && nvc_fs_magic(parent) == PROC_MAGIC_) {
            /* A procfs without the driver: cover /proc/driver with a tmpfs holding nvidia/. */
            if ((tree = nvc_tmpfs_tree("0555", NVC_MNT_NODEV | NVC_MNT_NOSUID | NVC_MNT_NOEXEC)) < 0 ||
                nvc_attach_tree(tree, parent) < 0) {
                nvc_err_set(err, "mount operation failed: /proc/driver");
                close(parent);
                return -1;
            }
            close(tree);
            close(parent);
            if ((parent = nvc_open_in_root(root, "/proc/driver", O_PATH | O_DIRECTORY, 0)) < 0 ||
                mkdirat(parent, "nvidia", 0555) < 0) {
                nvc_err_set(err, "file creation failed: %s", NVC_PROC_DRIVER);
                if (parent >= 0)
                    close(parent);
                return -1;
            }
            close(parent);
            fd = nvc_open_in_root(root, NVC_PROC_DRIVER, O_PATH | O_DIRECTORY, 0);
            goto seed;
        }
        if (parent >= 0)
            close(parent);
        if ((fd = nvc_mkdir_in_root(root, NVC_PROC_DRIVER, 0555)) < 0) {
            nvc_err_set(err, "file creation failed: %s", NVC_PROC_DRIVER);
            return -1;
        }
    }
    if ((tree = nvc_tmpfs_tree("0555", NVC_MNT_NODEV | NVC_MNT_NOSUID | NVC_MNT_NOEXEC)) < 0 ||
        nvc_attach_tree(tree, fd) < 0) {
        nvc_err_set(err, "mount operation failed: %s", NVC_PROC_DRIVER);
        close(fd);
        return -1;
    }
    close(tree);
    close(fd);
    fd = nvc_open_in_root(root, NVC_PROC_DRIVER, O_PATH | O_DIRECTORY, 0);

seed:
    if (fd < 0) {
        nvc_err_set(err, "open failed: %s", NVC_PROC_DRIVER);
        return -1;
    }
    for (size_t i = 0; i < 3; ++i) {
        if (p->seeds[i] >= 0 && copy_fd_into(p->seeds[i], fd, proc_seed_files[i]) < 0) {
            nvc_err_set(err, "file creation failed: %s/%s", NVC_PROC_DRIVER, proc_seed_files[i]);
            close(fd);
            return -1;
        }
    }
    close(fd);
    return 0;
}

/* Child, inside the container's mount namespace. */
static int plan_run(void *arg, int root, struct nvc_err *err)
{
    struct plan *p = arg;
    struct item *it;
    int target;

    for (size_t i = 0; i < p->n; ++i) {
        it = &p->items[i];
        switch (it->kind) {
        case ITEM_PROC_DRIVER:
            if (ensure_proc_driver(p, root, err) < 0)
                return -1;
            break;
        case ITEM_SYMLINK:
            if (nvc_symlink_in_root(root, it->dst, it->name, it->src) < 0) {
                nvc_err_set(err, "file creation failed: %s/%s", it->dst, it->name);
                return -1;
            }
            break;
        case ITEM_BIND:
            if (S_ISDIR(it->mode))
                target = nvc_mkdir_in_root(root, it->dst, it->mode & 07777);
            else
                target = nvc_mkfile_in_root(root, it->dst, it->mode & 0777);
            if (target < 0) {
                nvc_err_set(err, "file creation failed: %s", it->dst);
                return -1;
            }
            if (nvc_attach_tree(it->tree, target) < 0) {
                nvc_err_set(err, "mount operation failed: %s", it->dst);
                close(target);
                return -1;
            }
            close(target);
            break;
        }
    }
    return 0;
}

static int plan_execute(struct nvc_context *ctx, const struct nvc_container *cnt, struct plan *p)
{
    struct nvc_ns_job job = {"mount", plan_open_host, plan_run, p};

    return nvc_ns_run(ctx, cnt, &job);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int nvc_driver_mount(struct nvc_context *ctx, const struct nvc_container *cnt, const struct nvc_driver_info *info)
{
    struct plan p = {.root = NULL};
    unsigned delay;
    size_t first_lib;
    const char *path;
    int rv = -1;

    if (nvc_validate_context(ctx) < 0)
        return -1;
    if (nvc_validate_args(ctx, cnt != NULL && info != NULL) < 0)
        return -1;
    if ((delay = nvc_sim_mount_delay_ms()) > 0)
        sleep_ms(delay);
    p.root = ctx->root;

    if (plan_proc_driver(&ctx->err, &p) < 0)
        goto out;
    if (info->bins != NULL && plan_files(&ctx->err, &p, cnt, cnt->bins_dir, info->bins, info->nbins) < 0)
        goto out;
    first_lib = p.n;
    if (info->libs != NULL && plan_files(&ctx->err, &p, cnt, cnt->libs_dir, info->libs, info->nlibs) < 0)
        goto out;
    if (plan_symlinks(&ctx->err, &p, cnt->libs_dir, first_lib) < 0)
        goto out;
    if ((cnt->flags & OPT_COMPAT32) && info->libs32 != NULL) {
        first_lib = p.n;
        if (plan_files(&ctx->err, &p, cnt, cnt->libs32_dir, info->libs32, info->nlibs32) < 0 ||
            plan_symlinks(&ctx->err, &p, cnt->libs32_dir, first_lib) < 0)
            goto out;
    }
#if NVC_HAS_FIRMWARE
    for (size_t i = 0; info->firmwares != NULL && i < info->nfirmwares; ++i) {
        if (plan_bind_reported(&ctx->err, &p, info->firmwares[i], ATTRS_FILE) < 0)
            goto out;
    }
#endif
    for (size_t i = 0; info->ipcs != NULL && i < info->nipcs; ++i) {
        path = info->ipcs[i];
        /* Only utility needs persistenced/fabricmanager; everything else is compute only. */
        if (strstr(path, "nvidia-persistenced/socket") != NULL || strstr(path, "nvidia-fabricmanager/socket") != NULL) {
            if (!(cnt->flags & OPT_UTILITY_LIBS))
                continue;
        } else if (!(cnt->flags & OPT_COMPUTE_LIBS)) {
            continue;
        }
        if (plan_bind_reported(&ctx->err, &p, path, ATTRS_IPC) < 0)
            goto out;
    }
    for (size_t i = 0; info->devs != NULL && i < info->ndevs; ++i) {
        if (!(cnt->flags & OPT_COMPUTE_LIBS) && major(info->devs[i].id) != NVC_NV_MAJOR)
            continue;
        if (!(cnt->flags & OPT_DISPLAY) && major(info->devs[i].id) == NVC_NV_MAJOR &&
            minor(info->devs[i].id) == NVC_MODESET_MINOR)
            continue;
        if (!(cnt->flags & OPT_NO_DEVBIND) && plan_device(&ctx->err, &p, &info->devs[i]) < 0)
            goto out;
    }
    rv = plan_execute(ctx, cnt, &p);
out:
    plan_free(&p);
    return rv;
}

/* /proc/driver/nvidia/gpus/<busid>: like the real library, try NVML's 32-bit PCI domain and
   then the 16-bit one the driver's procfs uses (and lower-case hex, as procfs spells it). */
static int plan_gpu_proc(struct nvc_err *err, struct plan *p, const char *busid)
{
    char name[64], path[128];
    char *host;
    struct stat s;

    for (int attempt = 0; attempt < 4; ++attempt) {
        const char *id = (attempt & 1) && strlen(busid) > 4 ? busid + 4 : busid;

        snprintf(name, sizeof(name), "%s", id);
        if (attempt >= 2) {
            for (char *c = name; *c != '\0'; ++c)
                *c = (char)tolower((unsigned char)*c);
        }
        snprintf(path, sizeof(path), NVC_PROC_DRIVER "/gpus/%s", name);
        if ((host = nvc_host_path(err, p->root, path)) == NULL)
            return -1;
        if (stat(host, &s) == 0) {
            int rv = (plan_proc_driver(err, p) < 0 || plan_bind_reported(err, p, host, ATTRS_PROC) < 0) ? -1 : 0;

            free(host);
            return rv;
        }
        free(host);
    }
    return 0;
}

int nvc_device_mount(struct nvc_context *ctx, const struct nvc_container *cnt, const struct nvc_device *dev)
{
    struct plan p = {.root = NULL};
    int rv = -1;

    if (nvc_validate_context(ctx) < 0)
        return -1;
    if (nvc_validate_args(ctx, cnt != NULL && dev != NULL && dev->node.path != NULL) < 0)
        return -1;
    p.root = ctx->root;
    if (!(cnt->flags & OPT_NO_DEVBIND) && plan_device(&ctx->err, &p, &dev->node) < 0)
        goto out;
    /* The per-GPU procfs entry, where the simulated driver tree has one. */
    if (dev->busid != NULL && plan_gpu_proc(&ctx->err, &p, dev->busid) < 0)
        goto out;
    rv = plan_execute(ctx, cnt, &p);
out:
    plan_free(&p);
    return rv;
}

#if NVC_HAS_MIG
/* The proc capability file (read-only) and, unless no-devbind, the device node it names. */
static int plan_cap(struct nvc_context *ctx, struct plan *p, const struct nvc_container *cnt, const char *caps_dir)
{
    struct nvc_device_node node = {0};
    char *access;
    int rv = -1;

    if ((access = nvc_xasprintf(&ctx->err, "%s/access", caps_dir)) == NULL)
        return -1;
    if (plan_bind_reported(&ctx->err, p, access, ATTRS_PROC) < 0)
        goto out;
    if (nvc_caps_node(ctx, access, &node) < 0)
        goto out;
    if (!(cnt->flags & OPT_NO_DEVBIND) && plan_device(&ctx->err, p, &node) < 0)
        goto out;
    rv = 0;
out:
    free(node.path);
    free(access);
    return rv;
}

int nvc_mig_device_access_caps_mount(struct nvc_context *ctx, const struct nvc_container *cnt,
                                     const struct nvc_mig_device *dev)
{
    struct plan p = {.root = NULL};
    int rv = -1;

    if (nvc_validate_context(ctx) < 0)
        return -1;
    if (nvc_validate_args(ctx, cnt != NULL && dev != NULL && dev->gi_caps_path != NULL && dev->ci_caps_path != NULL) < 0)
        return -1;
    p.root = ctx->root;
    if (plan_proc_driver(&ctx->err, &p) < 0 || plan_cap(ctx, &p, cnt, dev->gi_caps_path) < 0 ||
        plan_cap(ctx, &p, cnt, dev->ci_caps_path) < 0)
        goto out;
    rv = plan_execute(ctx, cnt, &p);
out:
    plan_free(&p);
    return rv;
}

/* Like the real library: the whole proc capabilities tree and the whole /dev/nvidia-caps. */
static int global_caps_mount(struct nvc_context *ctx, const struct nvc_container *cnt, const char *which)
{
    struct nvc_device_node node = {0};
    struct plan p = {.root = NULL};
    int rv = -1;

    if (nvc_validate_context(ctx) < 0)
        return -1;
    if (nvc_validate_args(ctx, cnt != NULL) < 0)
        return -1;
    p.root = ctx->root;
    if (plan_proc_driver(&ctx->err, &p) < 0 || plan_bind_reported(&ctx->err, &p, NVC_PROC_CAPS, ATTRS_PROC) < 0 ||
        plan_bind_reported(&ctx->err, &p, NVC_CAPS_DEV_DIR, ATTRS_DEVDIR) < 0)
        goto out;
    if (nvc_caps_node(ctx, which, &node) < 0)
        goto out;
    rv = plan_execute(ctx, cnt, &p);
out:
    free(node.path);
    plan_free(&p);
    return rv;
}

int nvc_mig_config_global_caps_mount(struct nvc_context *ctx, const struct nvc_container *cnt)
{
    return global_caps_mount(ctx, cnt, NVC_PROC_CAPS "/mig/config");
}

int nvc_mig_monitor_global_caps_mount(struct nvc_context *ctx, const struct nvc_container *cnt)
{
    return global_caps_mount(ctx, cnt, NVC_PROC_CAPS "/mig/monitor");
}

/* The real library only adds device cgroup rules here; the simulation leaves cgroups to the
   runtime (the hook declares devices in config.json), so it only checks the container. */
int nvc_device_mig_caps_mount(struct nvc_context *ctx, const struct nvc_container *cnt, const struct nvc_device *dev)
{
    struct plan p = {.root = NULL};

    if (nvc_validate_context(ctx) < 0)
        return -1;
    if (nvc_validate_args(ctx, cnt != NULL && dev != NULL) < 0)
        return -1;
    p.root = ctx->root;
    return plan_execute(ctx, cnt, &p);
}
#endif

#if NVC_HAS_IMEX
int nvc_imex_channel_mount(struct nvc_context *ctx, const struct nvc_container *cnt, const struct nvc_imex_channel *chan)
{
    struct nvc_device_node node = {0};
    struct plan p = {.root = NULL};
    char *host = NULL;
    struct stat s;
    int rv = -1;

    if (nvc_validate_context(ctx) < 0)
        return -1;
    if (nvc_validate_args(ctx, cnt != NULL && chan != NULL && chan->id >= 0) < 0)
        return -1;
    p.root = ctx->root;
    if ((node.path = nvc_xasprintf(&ctx->err, "/dev/nvidia-caps-imex-channels/channel%d", chan->id)) == NULL)
        goto out;
    if ((host = nvc_host_path(&ctx->err, ctx->root, node.path)) == NULL)
        goto out;
    if (stat(host, &s) < 0 || !S_ISCHR(s.st_mode)) {
        nvc_err_set(&ctx->err, "stat failed: %s", host);
        goto out;
    }
    node.id = s.st_rdev;
    if (!(cnt->flags & OPT_NO_DEVBIND) && plan_device(&ctx->err, &p, &node) < 0)
        goto out;
    rv = plan_execute(ctx, cnt, &p);
out:
    free(host);
    free(node.path);
    plan_free(&p);
    return rv;
}
#endif
