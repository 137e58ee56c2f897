/* Driver and device information, taken from the simulated host instead of the RM driver. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "nvc_info.h"
#include "nvc_internal.h"

static const struct nvc_option driver_opts[] = {
    {"no-glvnd", OPT_NO_GLVND},
    {"no-uvm", OPT_NO_UVM},
    {"no-modeset", OPT_NO_MODESET},
    {"no-mps", OPT_NO_MPS},
    {"no-persistenced", OPT_NO_PERSISTENCED},
    {"no-fabricmanager", OPT_NO_FABRICMANAGER},
#if NVC_HAS_FIRMWARE
    {"no-gsp-firmware", OPT_NO_GSP_FIRMWARE},
#endif
};

/* The libraries and binaries the real library knows, with the capability that selects them. */
const struct nvc_file_class nvc_libraries[] = {
    {"libnvidia-ml.so", OPT_UTILITY_LIBS, false},
    {"libnvidia-cfg.so", OPT_UTILITY_LIBS, false},
    {"libnvidia-nscq.so", OPT_UTILITY_LIBS, false},
    {"libcuda.so", OPT_COMPUTE_LIBS, false},
    {"libcudadebugger.so", OPT_COMPUTE_LIBS, false},
    {"libnvidia-opencl.so", OPT_COMPUTE_LIBS, false},
    {"libnvidia-gpucomp.so", OPT_COMPUTE_LIBS, false},
    {"libnvidia-ptxjitcompiler.so", OPT_COMPUTE_LIBS, false},
    {"libnvidia-fatbinaryloader.so", OPT_COMPUTE_LIBS, false},
    {"libnvidia-allocator.so", OPT_COMPUTE_LIBS, false},
    {"libnvidia-compiler.so", OPT_COMPUTE_LIBS, false},
    {"libnvidia-nvvm.so", OPT_COMPUTE_LIBS, false},
    {"libnvidia-pkcs11.so", OPT_COMPUTE_LIBS, false},
    {"libnvidia-pkcs11-openssl3.so", OPT_COMPUTE_LIBS, false},
    {"libvdpau_nvidia.so", OPT_VIDEO_LIBS, false},
    {"libnvidia-encode.so", OPT_VIDEO_LIBS, false},
    {"libnvidia-opticalflow.so", OPT_VIDEO_LIBS, false},
    {"libnvcuvid.so", OPT_VIDEO_LIBS, false},
    {"libnvidia-eglcore.so", OPT_GRAPHICS_LIBS, false},
    {"libnvidia-glcore.so", OPT_GRAPHICS_LIBS, false},
    {"libnvidia-tls.so", OPT_GRAPHICS_LIBS, false},
    {"libnvidia-glsi.so", OPT_GRAPHICS_LIBS, false},
    {"libnvidia-fbc.so", OPT_GRAPHICS_LIBS, false},
    {"libnvidia-ifr.so", OPT_GRAPHICS_LIBS, false},
    {"libnvidia-rtcore.so", OPT_GRAPHICS_LIBS, false},
    {"libnvoptix.so", OPT_GRAPHICS_LIBS, false},
    {"libGLX_nvidia.so", OPT_GRAPHICS_LIBS, true},
    {"libEGL_nvidia.so", OPT_GRAPHICS_LIBS, true},
    {"libGLESv2_nvidia.so", OPT_GRAPHICS_LIBS, true},
    {"libGLESv1_CM_nvidia.so", OPT_GRAPHICS_LIBS, true},
    {"libnvidia-glvkspirv.so", OPT_GRAPHICS_LIBS, true},
    {"libnvidia-ngx.so", OPT_NGX_LIBS, false},
};
const size_t nvc_nlibraries = sizeof(nvc_libraries) / sizeof(nvc_libraries[0]);

const struct nvc_file_class nvc_binaries[] = {
    {"nvidia-smi", OPT_UTILITY_BINS, false},
    {"nvidia-debugdump", OPT_UTILITY_BINS, false},
    {"nvidia-persistenced", OPT_UTILITY_BINS, false},
    {"nvidia-cuda-mps-control", OPT_COMPUTE_BINS, false},
    {"nvidia-cuda-mps-server", OPT_COMPUTE_BINS, false},
};
const size_t nvc_nbinaries = sizeof(nvc_binaries) / sizeof(nvc_binaries[0]);

int nvc_file_flags(const char *name)
{
    size_t n;

    for (size_t i = 0; i < nvc_nlibraries; ++i) {
        n = strlen(nvc_libraries[i].name);
        if (strncmp(name, nvc_libraries[i].name, n) == 0 && (name[n] == '\0' || name[n] == '.'))
            return nvc_libraries[i].flags;
    }
    for (size_t i = 0; i < nvc_nbinaries; ++i) {
        if (strcmp(name, nvc_binaries[i].name) == 0)
            return nvc_binaries[i].flags;
    }
    return 0;
}

/* A growable list of owned strings. */
struct strv {
    char **v;
    size_t n, cap;
};

static int strv_add(struct nvc_err *err, struct strv *l, char *s)
{
    char **grown;

    if (s == NULL)
        return -1;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        if ((grown = realloc(l->v, l->cap * sizeof(*grown))) == NULL) {
            free(s);
            nvc_err_set(err, "memory allocation failed");
            return -1;
        }
        l->v = grown;
    }
    l->v[l->n++] = s;
    return 0;
}

static bool is_regular(const char *path)
{
    struct stat s;

    return lstat(path, &s) == 0 && S_ISREG(s.st_mode);
}

static bool exists(const char *path)
{
    struct stat s;

    return stat(path, &s) == 0;
}

static int find_libraries(struct nvc_err *err, const char *droot, const char *dir, int flags, struct strv *out)
{
    char *path;

    for (size_t i = 0; i < nvc_nlibraries; ++i) {
        if (nvc_libraries[i].glvnd && (flags & OPT_NO_GLVND))
            continue;
        /* The full-version file; ldconfig makes the SONAME links inside the container. */
        path = nvc_xasprintf(err, "%s%s/%s.%s", droot, dir, nvc_libraries[i].name, nvc_sim_driver_version());
        if (path == NULL)
            return -1;
        if (!is_regular(path)) {
            free(path);
            continue;
        }
        if (strv_add(err, out, path) < 0)
            return -1;
    }
    return 0;
}

static int find_binaries(struct nvc_err *err, const char *droot, int flags, struct strv *out)
{
    char *path;

    for (size_t i = 0; i < nvc_nbinaries; ++i) {
        if ((flags & OPT_NO_PERSISTENCED) && strcmp(nvc_binaries[i].name, "nvidia-persistenced") == 0)
            continue;
        if ((flags & OPT_NO_MPS) && strncmp(nvc_binaries[i].name, "nvidia-cuda-mps", 15) == 0)
            continue;
        if ((path = nvc_xasprintf(err, "%s/usr/bin/%s", droot, nvc_binaries[i].name)) == NULL)
            return -1;
        if (!exists(path)) {
            free(path);
            continue;
        }
        if (strv_add(err, out, path) < 0)
            return -1;
    }
    return 0;
}

static int find_ipcs(struct nvc_err *err, const char *droot, int flags, struct strv *out)
{
    static const struct {
        const char *path;
        int skip_flag;
    } ipcs[] = {
        {"/var/run/nvidia-persistenced/socket", OPT_NO_PERSISTENCED},
        {"/var/run/nvidia-fabricmanager/socket", OPT_NO_FABRICMANAGER},
        {"/tmp/nvidia-mps", OPT_NO_MPS},
    };
    char *path;

    for (size_t i = 0; i < sizeof(ipcs) / sizeof(ipcs[0]); ++i) {
        if (flags & ipcs[i].skip_flag)
            continue;
        if ((path = nvc_xasprintf(err, "%s%s", droot, ipcs[i].path)) == NULL)
            return -1;
        if (!exists(path)) {
            free(path);
            continue;
        }
        if (strv_add(err, out, path) < 0)
            return -1;
    }
    return 0;
}

#if NVC_HAS_FIRMWARE
static int find_firmwares(struct nvc_err *err, const char *droot, int flags, struct strv *out)
{
    char *dir, *path;
    struct dirent *e;
    DIR *d;
    int rv = 0;

    if (flags & OPT_NO_GSP_FIRMWARE)
        return 0;
    if ((dir = nvc_xasprintf(err, "%s/lib/firmware/nvidia/%s", droot, nvc_sim_driver_version())) == NULL)
        return -1;
    if ((d = opendir(dir)) == NULL) {
        free(dir);
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "gsp", 3) != 0 || strlen(e->d_name) < 5 ||
            strcmp(e->d_name + strlen(e->d_name) - 4, ".bin") != 0)
            continue;
        if ((path = nvc_xasprintf(err, "%s/%s", dir, e->d_name)) == NULL || strv_add(err, out, path) < 0) {
            rv = -1;
            break;
        }
    }
    closedir(d);
    free(dir);
    return rv;
}
#endif

/* A control device when its node exists in the simulated /dev (nvidiactl must). */
static int add_device(struct nvc_err *err, const char *name, bool required, struct nvc_device_node *devs,
                      size_t *n)
{
    struct stat s;
    char host[4096];

    snprintf(host, sizeof(host), "%s/dev/%s", nvc_sim_dir(), name);
    if (stat(host, &s) < 0 || !S_ISCHR(s.st_mode)) {
        if (!required)
            return 0;
        nvc_err_set(err, "stat failed: %s", host);
        return -1;
    }
    if ((devs[*n].path = nvc_xasprintf(err, "/dev/%s", name)) == NULL)
        return -1;
    devs[(*n)++].id = s.st_rdev;
    return 0;
}

static char *driver_root(struct nvc_context *ctx)
{
    char *droot = nvc_host_path(&ctx->err, ctx->root, "/");

    /* nvc_host_path of "/" is "<root>/"; drop the slash so paths join with one. */
    if (droot != NULL && strlen(droot) > 1 && droot[strlen(droot) - 1] == '/')
        droot[strlen(droot) - 1] = '\0';
    return droot;
}

struct nvc_driver_info *nvc_driver_info_new(struct nvc_context *ctx, const char *opts)
{
    struct nvc_driver_info *info = NULL;
    struct strv bins = {0}, libs = {0}, libs32 = {0}, ipcs = {0};
#if NVC_HAS_FIRMWARE
    struct strv fws = {0};
#endif
    char *droot = NULL;
    int flags, cuda;

    if (nvc_validate_context(ctx) < 0)
        return NULL;
    if (opts == NULL)
        opts = "";
    if ((flags = nvc_options_parse(&ctx->err, opts, driver_opts, sizeof(driver_opts) / sizeof(driver_opts[0]))) < 0)
        return NULL;
    if ((droot = driver_root(ctx)) == NULL)
        return NULL;
    if ((info = calloc(1, sizeof(*info))) == NULL) {
        nvc_err_set(&ctx->err, "memory allocation failed");
        goto fail;
    }
    cuda = nvc_sim_cuda_version();
    if ((info->nvrm_version = nvc_xstrdup(&ctx->err, nvc_sim_driver_version())) == NULL ||
        (info->cuda_version = nvc_xasprintf(&ctx->err, "%d.%d", cuda / 1000, (cuda % 1000) / 10)) == NULL)
        goto fail;
    if (find_binaries(&ctx->err, droot, flags, &bins) < 0 ||
        find_libraries(&ctx->err, droot, "/usr/lib/x86_64-linux-gnu", flags, &libs) < 0 ||
        find_libraries(&ctx->err, droot, "/usr/lib/i386-linux-gnu", flags, &libs32) < 0 ||
        find_ipcs(&ctx->err, droot, flags, &ipcs) < 0)
        goto fail;
#if NVC_HAS_FIRMWARE
    if (find_firmwares(&ctx->err, droot, flags, &fws) < 0)
        goto fail;
    info->firmwares = fws.v, info->nfirmwares = fws.n, fws.v = NULL;
#endif
    info->bins = bins.v, info->nbins = bins.n, bins.v = NULL;
    info->libs = libs.v, info->nlibs = libs.n, libs.v = NULL;
    info->libs32 = libs32.v, info->nlibs32 = libs32.n, libs32.v = NULL;
    info->ipcs = ipcs.v, info->nipcs = ipcs.n, ipcs.v = NULL;

    if ((info->devs = calloc(4, sizeof(*info->devs))) == NULL) {
        nvc_err_set(&ctx->err, "memory allocation failed");
        goto fail;
    }
    if (add_device(&ctx->err, "nvidiactl", true, info->devs, &info->ndevs) < 0)
        goto fail;
    if (!(flags & OPT_NO_UVM) && (add_device(&ctx->err, "nvidia-uvm", false, info->devs, &info->ndevs) < 0 ||
                                  add_device(&ctx->err, "nvidia-uvm-tools", false, info->devs, &info->ndevs) < 0))
        goto fail;
    if (!(flags & OPT_NO_MODESET) && add_device(&ctx->err, "nvidia-modeset", false, info->devs, &info->ndevs) < 0)
        goto fail;
    free(droot);
    return info;

fail:
    nvc_strv_free(bins.v, bins.n);
    nvc_strv_free(libs.v, libs.n);
    nvc_strv_free(libs32.v, libs32.n);
    nvc_strv_free(ipcs.v, ipcs.n);
#if NVC_HAS_FIRMWARE
    nvc_strv_free(fws.v, fws.n);
#endif
    nvc_driver_info_free(info);
    free(droot);
    return NULL;
}

void nvc_driver_info_free(struct nvc_driver_info *info)
{
    if (info == NULL)
        return;
    free(info->nvrm_version);
    free(info->cuda_version);
    nvc_strv_free(info->bins, info->nbins);
    nvc_strv_free(info->libs, info->nlibs);
    nvc_strv_free(info->libs32, info->nlibs32);
    nvc_strv_free(info->ipcs, info->nipcs);
    for (size_t i = 0; info->devs != NULL && i < info->ndevs; ++i)
        free(info->devs[i].path);
    free(info->devs);
#if NVC_HAS_FIRMWARE
    nvc_strv_free(info->firmwares, info->nfirmwares);
#endif
    free(info);
}

/* nvmlBrandType_t -> the brand string the library reports. */
static const char *brand_name(int brand)
{
    static const char *const names[] = {
        "Unknown", "Quadro", "Tesla", "NVS", "Grid", "GeForce", "Titan", "NvidiaVApps", "NvidiaVPC",
        "NvidiaVCS", "NvidiaVWS", "NvidiaCloudGaming", "QuadroRTX", "NvidiaRTX", "Nvidia", "GeForceRTX",
        "TitanRTX",
    };

    if (brand < 0 || (size_t)brand >= sizeof(names) / sizeof(names[0]))
        return "Unknown";
    return names[brand];
}

static void device_free(struct nvc_device *d)
{
    free(d->model);
    free(d->uuid);
    free(d->busid);
    free(d->arch);
    free(d->brand);
    free(d->node.path);
#if NVC_HAS_MIG
    free(d->mig_caps_path);
    for (size_t i = 0; d->mig_devices.devices != NULL && i < d->mig_devices.ndevices; ++i) {
        free(d->mig_devices.devices[i].uuid);
        free(d->mig_devices.devices[i].gi_caps_path);
        free(d->mig_devices.devices[i].ci_caps_path);
    }
    free(d->mig_devices.devices);
#endif
}

#if NVC_HAS_MIG
static int fill_migs(struct nvc_context *ctx, const char *droot, unsigned gpu, const struct nvc_sim_gpu_view *g,
                     struct nvc_device *d)
{
    struct nvc_sim_mig_view m;
    struct nvc_mig_device *md;

    d->mig_capable = g->max_mig > 0;
    if (!d->mig_capable)
        return 0;
    if ((d->mig_caps_path = nvc_xasprintf(&ctx->err, "%s" NVC_PROC_CAPS "/gpu%u/mig", droot, g->minor)) == NULL)
        return -1;
    if (!g->mig_mode || g->nmig == 0)
        return 0;
    if ((d->mig_devices.devices = calloc(g->nmig, sizeof(*md))) == NULL) {
        nvc_err_set(&ctx->err, "memory allocation failed");
        return -1;
    }
    for (unsigned i = 0; i < g->nmig; ++i) {
        nvc_sim_mig_view(gpu, i, &m);
        md = &d->mig_devices.devices[d->mig_devices.ndevices++];
        md->parent = d;
        md->gi = m.gi_id;
        md->ci = m.ci_id;
        if ((md->uuid = nvc_xstrdup(&ctx->err, m.uuid)) == NULL ||
            (md->gi_caps_path = nvc_xasprintf(&ctx->err, "%s/gi%u", d->mig_caps_path, m.gi_id)) == NULL ||
            (md->ci_caps_path = nvc_xasprintf(&ctx->err, "%s/gi%u/ci%u", d->mig_caps_path, m.gi_id, m.ci_id)) == NULL)
            return -1;
    }
    return 0;
}
#endif

struct nvc_device_info *nvc_device_info_new(struct nvc_context *ctx, const char *opts)
{
    struct nvc_device_info *info;
    struct nvc_sim_gpu_view g;
    struct nvc_device *d;
    char *droot = NULL;
    unsigned n;

    if (nvc_validate_context(ctx) < 0)
        return NULL;
    if (opts == NULL)
        opts = "";
    if (nvc_options_parse(&ctx->err, opts, NULL, 0) < 0) /* the library has no device options */
        return NULL;
    if ((info = calloc(1, sizeof(*info))) == NULL) {
        nvc_err_set(&ctx->err, "memory allocation failed");
        return NULL;
    }
    if ((droot = driver_root(ctx)) == NULL)
        goto fail;
    n = nvc_sim_ngpus();
    if (n > 0 && (info->gpus = calloc(n, sizeof(*info->gpus))) == NULL) {
        nvc_err_set(&ctx->err, "memory allocation failed");
        goto fail;
    }
    for (unsigned i = 0; i < n; ++i) {
        nvc_sim_gpu_view(i, &g);
        d = &info->gpus[info->ngpus++];
        if ((d->model = nvc_xstrdup(&ctx->err, g.name)) == NULL ||
            (d->uuid = nvc_xstrdup(&ctx->err, g.uuid)) == NULL ||
            (d->busid = nvc_xstrdup(&ctx->err, g.busid)) == NULL ||
            (d->arch = nvc_xasprintf(&ctx->err, "%d.%d", g.cc_major, g.cc_minor)) == NULL ||
            (d->brand = nvc_xstrdup(&ctx->err, brand_name(g.brand))) == NULL ||
            (d->node.path = nvc_xasprintf(&ctx->err, "/dev/nvidia%u", g.minor)) == NULL)
            goto fail;
        d->node.id = makedev(NVC_NV_MAJOR, g.minor);
#if NVC_HAS_MIG
        if (fill_migs(ctx, droot, i, &g, d) < 0)
            goto fail;
#endif
    }
    free(droot);
    return info;

fail:
    free(droot);
    nvc_device_info_free(info);
    return NULL;
}

void nvc_device_info_free(struct nvc_device_info *info)
{
    if (info == NULL)
        return;
    for (size_t i = 0; info->gpus != NULL && i < info->ngpus; ++i)
        device_free(&info->gpus[i]);
    free(info->gpus);
    free(info);
}

/* "DeviceFileMinor: N" of a proc capability file -> the /dev/nvidia-caps node it names. */
int nvc_caps_node(struct nvc_context *ctx, const char *proc_path, struct nvc_device_node *node)
{
    char *host, line[256];
    int minor = -1;
    FILE *f;

    if ((host = nvc_host_path(&ctx->err, ctx->root, proc_path)) == NULL)
        return -1;
    if ((f = fopen(host, "re")) == NULL) {
        nvc_err_set(&ctx->err, "open failed: %s", host);
        free(host);
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "DeviceFileMinor: %d", &minor) == 1)
            break;
    }
    fclose(f);
    if (minor < 0) {
        nvc_err_setx(&ctx->err, "unable to get cap device attributes: %s", host);
        free(host);
        return -1;
    }
    free(host);
    if ((node->path = nvc_xasprintf(&ctx->err, NVC_CAPS_DEV_DIR "/nvidia-cap%d", minor)) == NULL)
        return -1;
    node->id = makedev(nvc_sim_caps_major(), (unsigned)minor);
    return 0;
}

#if NVC_HAS_NVCAPS
int nvc_nvcaps_style(void)
{
    char path[4096];
    struct stat s;

    snprintf(path, sizeof(path), "%s" NVC_CAPS_DEV_DIR, nvc_sim_dir());
    if (stat(path, &s) == 0 && S_ISDIR(s.st_mode))
        return NVC_NVCAPS_STYLE_DEV;
    snprintf(path, sizeof(path), "%s/driver" NVC_PROC_CAPS, nvc_sim_dir());
    if (stat(path, &s) == 0)
        return NVC_NVCAPS_STYLE_PROC;
    return NVC_NVCAPS_STYLE_NONE;
}

int nvc_nvcaps_device_from_proc_path(struct nvc_context *ctx, const char *cap_path, struct nvc_device_node *node)
{
    if (nvc_validate_context(ctx) < 0)
        return -1;
    if (nvc_validate_args(ctx, cap_path != NULL && node != NULL) < 0)
        return -1;
    return nvc_caps_node(ctx, cap_path, node);
}
#endif
