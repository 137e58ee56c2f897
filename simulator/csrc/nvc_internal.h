/* Internals shared by the translation units of the simulated libnvidia-container. */
#ifndef HEADER_NVC_INTERNAL_H
#define HEADER_NVC_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

#include "nvc.h"

#define NVC_NV_MAJOR 195
#define NVC_CTL_MINOR 255
#define NVC_MODESET_MINOR 254

/* Paths the real library uses inside the container (and, under the driver root, on the host). */
#define NVC_PROC_DRIVER "/proc/driver/nvidia"
#define NVC_PROC_CAPS NVC_PROC_DRIVER "/capabilities"
#define NVC_CAPS_DEV_DIR "/dev/nvidia-caps"
#define NVC_DEFAULT_LDCONFIG "@/sbin/ldconfig"

/* Container options (bit values are ours; only the names are the library's interface). */
enum {
    OPT_SUPERVISED = 1 << 0,
    OPT_STANDALONE = 1 << 1,
    OPT_NO_CGROUPS = 1 << 2,
    OPT_NO_DEVBIND = 1 << 3,
    OPT_NO_CNTLIBS = 1 << 4,
    OPT_UTILITY_LIBS = 1 << 5,
    OPT_COMPUTE_LIBS = 1 << 6,
    OPT_NGX_LIBS = 1 << 7,
    OPT_VIDEO_LIBS = 1 << 8,
    OPT_GRAPHICS_LIBS = 1 << 9,
    OPT_DISPLAY = 1 << 10,
    OPT_UTILITY_BINS = 1 << 11,
    OPT_COMPUTE_BINS = 1 << 12,
    OPT_DISPLAY_LIBS = 1 << 13,
    OPT_COMPAT32 = 1 << 14,
    OPT_CUDA_COMPAT_MODE_DISABLED = 1 << 15,
    OPT_CUDA_COMPAT_MODE_MOUNT = 1 << 16,
    OPT_CUDA_COMPAT_MODE_LDCONFIG = 1 << 17,
};

/* Library (nvc_init) options. */
enum {
    OPT_LOAD_KMODS = 1 << 0,
    OPT_NO_CREATE_IMEX_CHANNELS = 1 << 1,
};

/* Driver (nvc_driver_info_new) options. */
enum {
    OPT_NO_GLVND = 1 << 0,
    OPT_NO_UVM = 1 << 1,
    OPT_NO_MODESET = 1 << 2,
    OPT_NO_MPS = 1 << 3,
    OPT_NO_PERSISTENCED = 1 << 4,
    OPT_NO_FABRICMANAGER = 1 << 5,
    OPT_NO_GSP_FIRMWARE = 1 << 6,
};

struct nvc_option {
    const char *name;
    int value;
};

struct nvc_err {
    int code;
    char *msg;
};

struct nvc_context {
    bool initialized;
    struct nvc_err err;
    char *root;       /* driver root on the host (the simulated tree unless configured) */
    char *ldcache;
    uid_t uid;
    gid_t gid;
    int flags;
#if NVC_HAS_IMEX
    struct nvc_imex_info imex;
#endif
};

struct nvc_container {
    int flags;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    int mnt_ns;       /* O_CLOEXEC fd of /proc/<pid>/ns/mnt, opened when the container was made */
    char *rootfs;
    char *bins_dir;
    char *libs_dir;
    char *libs32_dir;
    char *cudart_dir;
    char *ldconfig;
    char *cuda_compat_dir; /* <cudart_dir>/compat with cuda-compat-mode=ldconfig, else NULL */
};

/* Errors: setx records the message as is, set appends ": strerror(errno)" like the real one. */
void nvc_err_setx(struct nvc_err *, const char *, ...) __attribute__((format(printf, 2, 3)));
void nvc_err_set(struct nvc_err *, const char *, ...) __attribute__((format(printf, 2, 3)));
void nvc_err_reset(struct nvc_err *);
int nvc_validate_context(struct nvc_context *);
int nvc_validate_args(struct nvc_context *, bool);

/* Space separated option list -> flags, or -1 with "invalid option: X". */
int nvc_options_parse(struct nvc_err *, const char *, const struct nvc_option *, size_t);

char *nvc_xstrdup(struct nvc_err *, const char *);
char *nvc_xasprintf(struct nvc_err *, const char *, ...) __attribute__((format(printf, 2, 3)));
void nvc_strv_free(char **, size_t);

/* The simulated host (nvc_sim.c is the only unit that sees sim_topology.h and sim_faults.h). */
const char *nvc_sim_dir(void);
const char *nvc_sim_driver_version(void);
int nvc_sim_cuda_version(void);
unsigned nvc_sim_caps_major(void);
unsigned nvc_sim_ngpus(void);
/* 1 with the message copied when this nvc_init must fail (permanent or transient fault). */
int nvc_sim_init_fault(char *, size_t);
unsigned nvc_sim_mount_delay_ms(void);

/* Accessors for the topology (the struct is only complete inside nvc_sim.c). */
struct nvc_sim_gpu_view {
    unsigned index, minor;
    const char *uuid, *name, *busid;
    int brand, cc_major, cc_minor;
    unsigned max_mig, nmig;
    int mig_mode;
};
struct nvc_sim_mig_view {
    const char *uuid;
    unsigned gi_id, ci_id;
};
void nvc_sim_gpu_view(unsigned, struct nvc_sim_gpu_view *);
void nvc_sim_mig_view(unsigned, unsigned, struct nvc_sim_mig_view *);

/* Host path <-> container path of the simulated driver tree and device directory. */
/* The host file for a path the library reported: host paths are kept, container-style ones
   ("/dev/...", "/proc/driver/...") are looked up under the simulated host. */
char *nvc_host_path(struct nvc_err *, const char *root, const char *);
/* Where a host path of the simulated tree appears inside the container. */
const char *nvc_container_path(const char *root, const char *);

#endif /* HEADER_NVC_INTERNAL_H */
