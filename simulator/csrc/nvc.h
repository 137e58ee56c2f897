/* Public API of the simulated libnvidia-container.
 *
 * The struct layouts are those of the released library for the version the builder compiles
 * (NVC_MAJOR/NVC_MINOR/NVC_PATCH given on the command line), so that bindings written against a
 * real release see the same sizes and offsets (libnvc_bindings/declarations.py):
 *   1.0.x     no MIG fields, no firmware list
 *   1.1-1.4   MIG fields appended to nvc_device, MIG functions (nvcaps functions from 1.3)
 *   1.5-1.14  firmware list appended to nvc_driver_info
 *   >= 1.15   IMEX channel list appended to nvc_config, nvc_imex_channel_mount
 */
#ifndef HEADER_NVC_H
#define HEADER_NVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#if !defined(NVC_MAJOR) || !defined(NVC_MINOR) || !defined(NVC_PATCH)
#error "NVC_MAJOR, NVC_MINOR and NVC_PATCH must be defined by the builder"
#endif

#define NVC_STR_(x) #x
#define NVC_STR(x) NVC_STR_(x)
#define NVC_VERSION NVC_STR(NVC_MAJOR) "." NVC_STR(NVC_MINOR) "." NVC_STR(NVC_PATCH)

/* One comparable number per release: 1.17.8 -> 11708 (minor and patch stay below 100). */
#define NVC_AT_LEAST(ma, mi, pa) \
    ((NVC_MAJOR * 10000 + NVC_MINOR * 100 + NVC_PATCH) >= ((ma) * 10000 + (mi) * 100 + (pa)))

#define NVC_HAS_MIG NVC_AT_LEAST(1, 1, 0)
#define NVC_HAS_NVCAPS NVC_AT_LEAST(1, 3, 0)
#define NVC_HAS_FIRMWARE NVC_AT_LEAST(1, 5, 0)
#define NVC_HAS_IMEX NVC_AT_LEAST(1, 15, 0)
#define NVC_HAS_COMPAT_MODE NVC_AT_LEAST(1, 17, 7)

#define NVC_ARG_MAX 256

#define NVC_NVCAPS_STYLE_NONE 0
#define NVC_NVCAPS_STYLE_PROC 1
#define NVC_NVCAPS_STYLE_DEV 2

struct nvc_context;
struct nvc_container;

#if NVC_HAS_IMEX
struct nvc_imex_channel {
    int id;
};

struct nvc_imex_info {
    struct nvc_imex_channel *chans;
    size_t nchans;
};
#endif

struct nvc_version {
    unsigned int major;
    unsigned int minor;
    unsigned int patch;
    const char *string;
};

struct nvc_config {
    char *root;
    char *ldcache;
    uid_t uid;
    gid_t gid;
#if NVC_HAS_IMEX
    struct nvc_imex_info imex;
#endif
};

struct nvc_device_node {
    char *path;
    dev_t id;
};

struct nvc_driver_info {
    char *nvrm_version;
    char *cuda_version;
    char **bins;
    size_t nbins;
    char **libs;
    size_t nlibs;
    char **libs32;
    size_t nlibs32;
    char **ipcs;
    size_t nipcs;
    struct nvc_device_node *devs;
    size_t ndevs;
#if NVC_HAS_FIRMWARE
    char **firmwares;
    size_t nfirmwares;
#endif
};

#if NVC_HAS_MIG
struct nvc_mig_device {
    struct nvc_device *parent;
    char *uuid;
    unsigned int gi;
    unsigned int ci;
    char *gi_caps_path;
    char *ci_caps_path;
};

struct nvc_mig_device_info {
    struct nvc_mig_device *devices;
    size_t ndevices;
};
#endif

struct nvc_device {
    char *model;
    char *uuid;
    char *busid;
    char *arch;
    char *brand;
    struct nvc_device_node node;
#if NVC_HAS_MIG
    bool mig_capable;
    char *mig_caps_path;
    struct nvc_mig_device_info mig_devices;
#endif
};

struct nvc_device_info {
    struct nvc_device *gpus;
    size_t ngpus;
};

struct nvc_container_config {
    pid_t pid;
    char *rootfs;
    char *bins_dir;
    char *libs_dir;
    char *libs32_dir;
    char *cudart_dir;
    char *ldconfig;
};

const struct nvc_version *nvc_version(void);

struct nvc_context *nvc_context_new(void);
void nvc_context_free(struct nvc_context *);

struct nvc_config *nvc_config_new(void);
void nvc_config_free(struct nvc_config *);

int nvc_init(struct nvc_context *, const struct nvc_config *, const char *);
int nvc_shutdown(struct nvc_context *);

struct nvc_container_config *nvc_container_config_new(pid_t, const char *);
void nvc_container_config_free(struct nvc_container_config *);

struct nvc_container *nvc_container_new(struct nvc_context *, const struct nvc_container_config *,
                                        const char *);
void nvc_container_free(struct nvc_container *);

struct nvc_driver_info *nvc_driver_info_new(struct nvc_context *, const char *);
void nvc_driver_info_free(struct nvc_driver_info *);

struct nvc_device_info *nvc_device_info_new(struct nvc_context *, const char *);
void nvc_device_info_free(struct nvc_device_info *);

#if NVC_HAS_NVCAPS
int nvc_nvcaps_style(void);
int nvc_nvcaps_device_from_proc_path(struct nvc_context *, const char *, struct nvc_device_node *);
#endif

int nvc_driver_mount(struct nvc_context *, const struct nvc_container *,
                     const struct nvc_driver_info *);
int nvc_device_mount(struct nvc_context *, const struct nvc_container *, const struct nvc_device *);

#if NVC_HAS_MIG
int nvc_mig_device_access_caps_mount(struct nvc_context *, const struct nvc_container *,
                                     const struct nvc_mig_device *);
int nvc_mig_config_global_caps_mount(struct nvc_context *, const struct nvc_container *);
int nvc_mig_monitor_global_caps_mount(struct nvc_context *, const struct nvc_container *);
int nvc_device_mig_caps_mount(struct nvc_context *, const struct nvc_container *,
                              const struct nvc_device *);
#endif

#if NVC_HAS_IMEX
int nvc_imex_channel_mount(struct nvc_context *, const struct nvc_container *,
                           const struct nvc_imex_channel *);
#endif

int nvc_ldcache_update(struct nvc_context *, const struct nvc_container *);

const char *nvc_error(struct nvc_context *);

#endif /* HEADER_NVC_H */
