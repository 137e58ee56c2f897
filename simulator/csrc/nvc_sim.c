/* The one unit that sees the generated topology and the fault files of the simulated host;
 * everything else asks through these accessors. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_topology.h"
#include "sim_faults.h"

#include "nvc_internal.h"

#define DEFAULT_INIT_MESSAGE "cuda error: unknown error"

const char *nvc_sim_dir(void)
{
    return SIM_DIR;
}

const char *nvc_sim_driver_version(void)
{
    return SIM_DRIVER_VERSION;
}

int nvc_sim_cuda_version(void)
{
    return SIM_CUDA_VERSION;
}

unsigned nvc_sim_caps_major(void)
{
    return SIM_CAPS_MAJOR;
}

unsigned nvc_sim_ngpus(void)
{
    return SIM_NGPUS;
}

void nvc_sim_gpu_view(unsigned i, struct nvc_sim_gpu_view *v)
{
    const struct sim_gpu *g = &SIM_GPUS[i];

    v->index = g->index;
    v->minor = g->minor;
    v->uuid = g->uuid;
    v->name = g->name;
    v->busid = g->busid;
    v->brand = g->brand;
    v->cc_major = g->cc_major;
    v->cc_minor = g->cc_minor;
    v->max_mig = g->max_mig;
    v->nmig = g->nmig;
    v->mig_mode = g->mig_mode;
}

void nvc_sim_mig_view(unsigned gpu, unsigned mig, struct nvc_sim_mig_view *v)
{
    const struct sim_mig *m = &SIM_GPUS[gpu].migs[mig];

    v->uuid = m->uuid;
    v->gi_id = m->gi_id;
    v->ci_id = m->ci_id;
}

static void copy_message(char *out, size_t len, const char *msg)
{
    snprintf(out, len, "%s", (msg != NULL && *msg != '\0') ? msg : DEFAULT_INIT_MESSAGE);
}

int nvc_sim_init_fault(char *out, size_t len)
{
    char value[1024];
    const char *colon;

    if (sim_fault_get("nvc-init-permanent", value, sizeof(value))) {
        copy_message(out, len, value);
        return 1;
    }
    if (sim_fault_fire("nvc-init-transient")) {
        if (!sim_fault_get("nvc-init-transient", value, sizeof(value)))
            value[0] = '\0';
        colon = strchr(value, ':');
        copy_message(out, len, colon != NULL ? colon + 1 : NULL);
        return 1;
    }
    return 0;
}

unsigned nvc_sim_mount_delay_ms(void)
{
    char value[64];
    unsigned long ms;

    if (!sim_fault_get("nvc-mount-delay", value, sizeof(value)))
        return 0;
    ms = strtoul(value, NULL, 10);
    return ms > 600000UL ? 600000U : (unsigned)ms;
}

/* The host directory the driver files live in: the configured root, or the simulated tree. */
static const char *driver_root(const char *root, char *buf, size_t len)
{
    if (root != NULL && *root != '\0' && strcmp(root, "/") != 0)
        return root;
    snprintf(buf, len, "%s/driver", SIM_DIR);
    return buf;
}

static size_t under(const char *path, const char *dir)
{
    size_t n = strlen(dir);

    while (n > 1 && dir[n - 1] == '/')
        --n;
    if (strncmp(path, dir, n) == 0 && path[n] == '/')
        return n;
    return 0;
}

char *nvc_host_path(struct nvc_err *err, const char *root, const char *path)
{
    char buf[4096];
    const char *droot = driver_root(root, buf, sizeof(buf));

    if (under(path, droot) || under(path, SIM_DIR))
        return nvc_xstrdup(err, path);
    if (strncmp(path, "/dev/", 5) == 0)
        return nvc_xasprintf(err, "%s%s", SIM_DIR, path);
    return nvc_xasprintf(err, "%s%s%s", droot, path[0] == '/' ? "" : "/", path);
}

const char *nvc_container_path(const char *root, const char *host)
{
    char buf[4096];
    const char *droot = driver_root(root, buf, sizeof(buf));
    size_t n;

    if ((n = under(host, droot)) != 0)
        return host + n;
    if ((n = under(host, SIM_DIR)) != 0)
        return host + n;
    return host;
}
