/* Simulated NVML (libnvidia-ml.so.1) for the GPUs of one simulated host.
 *
 * Exports the NVML entry points pynvml (nvidia-ml-py) calls for discovery, with NVML's C
 * signatures, struct layouts, handle semantics and error codes.  The GPUs come from the
 * generated sim_topology.h; faults from DIR/faults (sim_faults.h), read on every call so that a
 * test can change them between calls of a long-lived process.
 */
#include "sim_topology.h"
#include "sim_faults.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NVML_API __attribute__((visibility("default")))

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_ALREADY_INITIALIZED = 5,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_INSUFFICIENT_POWER = 8,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_IRQ_ISSUE = 11,
    NVML_ERROR_LIBRARY_NOT_FOUND = 12,
    NVML_ERROR_FUNCTION_NOT_FOUND = 13,
    NVML_ERROR_CORRUPTED_INFOROM = 14,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_RESET_REQUIRED = 16,
    NVML_ERROR_OPERATING_SYSTEM = 17,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
    NVML_ERROR_IN_USE = 19,
    NVML_ERROR_MEMORY = 20,
    NVML_ERROR_NO_DATA = 21,
    NVML_ERROR_VGPU_ECC_NOT_SUPPORTED = 22,
    NVML_ERROR_INSUFFICIENT_RESOURCES = 23,
    NVML_ERROR_FREQ_NOT_SUPPORTED = 24,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_DEPRECATED = 26,
    NVML_ERROR_NOT_READY = 27,
    NVML_ERROR_GPU_NOT_FOUND = 28,
    NVML_ERROR_INVALID_STATE = 29,
    NVML_ERROR_UNKNOWN = 999,
};

#define NVML_STRUCT_VERSION(size, ver) ((unsigned)(size) | ((unsigned)(ver) << 24))
#define MIB (1024ULL * 1024ULL)

/* ---- NVML's public structs (nvml.h layouts) ---- */

typedef struct {
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

typedef struct {
    unsigned version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;
#define nvmlMemory_v2 NVML_STRUCT_VERSION(sizeof(nvmlMemory_v2_t), 2)

typedef struct {
    unsigned multiprocessorCount, sharedCopyEngineCount, sharedDecoderCount,
        sharedEncoderCount, sharedJpegCount, sharedOfaCount, gpuInstanceSliceCount,
        computeInstanceSliceCount;
    unsigned long long memorySizeMB;
} nvmlDeviceAttributes_t;

typedef struct {
    unsigned id, isP2pSupported, sliceCount, instanceCount, multiprocessorCount,
        copyEngineCount, decoderCount, encoderCount, jpegCount, ofaCount;
    unsigned long long memorySizeMB;
} nvmlGpuInstanceProfileInfo_t;

typedef struct {
    unsigned version, id, isP2pSupported, sliceCount, instanceCount, multiprocessorCount,
        copyEngineCount, decoderCount, encoderCount, jpegCount, ofaCount;
    unsigned long long memorySizeMB;
    char name[96];
} nvmlGpuInstanceProfileInfo_v2_t;
#define nvmlGpuInstanceProfileInfo_v2 \
    NVML_STRUCT_VERSION(sizeof(nvmlGpuInstanceProfileInfo_v2_t), 2)

typedef struct {
    unsigned start, size;
} nvmlGpuInstancePlacement_t;

struct sim_handle;
typedef struct sim_handle *nvmlDevice_t;
struct sim_gi;
typedef struct sim_gi *nvmlGpuInstance_t;
struct sim_ci;
typedef struct sim_ci *nvmlComputeInstance_t;

typedef struct {
    nvmlDevice_t device;
    unsigned id, profileId;
    nvmlGpuInstancePlacement_t placement;
} nvmlGpuInstanceInfo_t;

typedef struct {
    unsigned start, size;
} nvmlComputeInstancePlacement_t;

typedef struct {
    nvmlDevice_t device;
    nvmlGpuInstance_t gpuInstance;
    unsigned id, profileId;
    nvmlComputeInstancePlacement_t placement;
} nvmlComputeInstanceInfo_t;

/* ---- handles: static structs, one per GPU, MIG device, GPU instance, compute instance ---- */

struct sim_handle {
    const struct sim_gpu *gpu;
    const struct sim_gpu_extra *extra;
    const struct sim_mig *mig; /* NULL for a GPU handle */
    struct sim_handle *parent; /* the GPU handle of a MIG device */
};
struct sim_gi {
    struct sim_handle *mig;
};
struct sim_ci {
    struct sim_handle *mig;
};

#define SIM_MIG_SLOTS (SIM_MIG_COUNT > 0 ? SIM_MIG_COUNT : 1)
static struct sim_handle gpu_handles[SIM_GPU_COUNT];
static struct sim_handle mig_handles[SIM_MIG_SLOTS];
static struct sim_gi gi_handles[SIM_MIG_SLOTS];
static struct sim_ci ci_handles[SIM_MIG_SLOTS];
static int init_count;

static void setup_handles(void)
{
    unsigned i, m;

    for (i = 0; i < SIM_GPU_COUNT; i++) {
        gpu_handles[i].gpu = &SIM_GPUS[i];
        gpu_handles[i].extra = &SIM_GPU_EXTRAS[i];
        gpu_handles[i].mig = NULL;
        gpu_handles[i].parent = NULL;
        for (m = 0; m < SIM_GPUS[i].nmig; m++) {
            struct sim_handle *h = &mig_handles[SIM_GPU_EXTRAS[i].mig_base + m];
            h->gpu = &SIM_GPUS[i];
            h->extra = &SIM_GPU_EXTRAS[i];
            h->mig = &SIM_GPUS[i].migs[m];
            h->parent = &gpu_handles[i];
            gi_handles[SIM_GPU_EXTRAS[i].mig_base + m].mig = h;
            ci_handles[SIM_GPU_EXTRAS[i].mig_base + m].mig = h;
        }
    }
}

static int initialized(void)
{
    return __atomic_load_n(&init_count, __ATOMIC_SEQ_CST) > 0;
}

/* 1 when gpu-lost names this GPU's index (the value may list several: "1,3"). */
static int gpu_lost(const struct sim_gpu *gpu)
{
    char value[256];
    char *cursor, *end;
    unsigned long index;

    if (!sim_fault_get("gpu-lost", value, sizeof value))
        return 0;
    cursor = value;
    while (*cursor) {
        index = strtoul(cursor, &end, 10);
        if (end == cursor)
            return 0;
        if (index == gpu->index)
            return 1;
        cursor = end;
        while (*cursor == ',' || *cursor == ' ')
            cursor++;
    }
    return 0;
}

static int is_gpu_handle(const struct sim_handle *h)
{
    return h >= gpu_handles && h < gpu_handles + SIM_GPU_COUNT;
}

static int is_mig_handle(const struct sim_handle *h)
{
    return SIM_MIG_COUNT > 0 && h >= mig_handles && h < mig_handles + SIM_MIG_COUNT &&
           h->mig != NULL;
}

/* The common guard of every device query: initialized, a handle of ours, its GPU not lost. */
static nvmlReturn_t check_device(const struct sim_handle *h)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (h == NULL || (!is_gpu_handle(h) && !is_mig_handle(h)))
        return NVML_ERROR_INVALID_ARGUMENT;
    if (gpu_lost(h->gpu))
        return NVML_ERROR_GPU_IS_LOST;
    return NVML_SUCCESS;
}

/* check_device, and the handle must be a whole GPU (MIG parents' queries). */
static nvmlReturn_t check_gpu(const struct sim_handle *h)
{
    nvmlReturn_t rc = check_device(h);

    if (rc == NVML_SUCCESS && !is_gpu_handle(h))
        return NVML_ERROR_INVALID_ARGUMENT;
    return rc;
}

static nvmlReturn_t copy_string(char *out, unsigned len, const char *value)
{
    size_t need = strlen(value) + 1;

    if (out == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (need > len)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(out, value, need);
    return NVML_SUCCESS;
}

static const struct sim_profile *profile_by_id(const struct sim_handle *h, unsigned id)
{
    unsigned i;

    for (i = 0; i < h->extra->nprofiles; i++)
        if (h->extra->profiles[i].id == id)
            return &h->extra->profiles[i];
    return NULL;
}

static const struct sim_profile *profile_by_index(const struct sim_handle *h, unsigned index)
{
    unsigned i;

    for (i = 0; i < h->extra->nprofiles; i++)
        if (h->extra->profiles[i].index == index)
            return &h->extra->profiles[i];
    return NULL;
}

/* ---- init, shutdown, errors, system queries ---- */

NVML_API nvmlReturn_t nvmlInitWithFlags(unsigned flags)
{
    (void)flags;
    if (__atomic_fetch_add(&init_count, 1, __ATOMIC_SEQ_CST) == 0)
        setup_handles();
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlInit_v2(void)
{
    return nvmlInitWithFlags(0);
}

NVML_API nvmlReturn_t nvmlInit(void)
{
    return nvmlInitWithFlags(0);
}

NVML_API nvmlReturn_t nvmlShutdown(void)
{
    int current = __atomic_load_n(&init_count, __ATOMIC_SEQ_CST);

    while (current > 0) {
        if (__atomic_compare_exchange_n(&init_count, &current, current - 1, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            return NVML_SUCCESS;
    }
    return NVML_ERROR_UNINITIALIZED;
}

NVML_API const char *nvmlErrorString(nvmlReturn_t result)
{
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_ALREADY_INITIALIZED: return "Already Initialized";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_INSUFFICIENT_POWER: return "Insufficient External Power";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_IRQ_ISSUE: return "Interrupt Request Issue";
    case NVML_ERROR_LIBRARY_NOT_FOUND: return "NVML Shared Library Not Found";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_CORRUPTED_INFOROM: return "Corrupted infoROM";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_RESET_REQUIRED: return "GPU requires restart";
    case NVML_ERROR_OPERATING_SYSTEM: return "The operating system has blocked the request.";
    case NVML_ERROR_LIB_RM_VERSION_MISMATCH:
        return "RM has detected an NVML/RM version mismatch.";
    case NVML_ERROR_IN_USE: return "In use by another client";
    case NVML_ERROR_MEMORY: return "Insufficient Memory";
    case NVML_ERROR_NO_DATA: return "No data";
    case NVML_ERROR_INSUFFICIENT_RESOURCES: return "Insufficient resources";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Version mismatch";
    case NVML_ERROR_DEPRECATED: return "Deprecated";
    case NVML_ERROR_NOT_READY: return "Not ready";
    case NVML_ERROR_GPU_NOT_FOUND: return "GPU not found";
    case NVML_ERROR_INVALID_STATE: return "Invalid state";
    default: return "Unknown Error";
    }
}

NVML_API nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned length)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    return copy_string(version, length, SIM_DRIVER_VERSION);
}

NVML_API nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned length)
{
    /* NVML's version is the CUDA major followed by the driver version ("12.535.104.05"). */
    char text[96];

    snprintf(text, sizeof text, "%d.%s", SIM_CUDA_VERSION / 1000, SIM_DRIVER_VERSION);
    return copy_string(version, length, text);
}

NVML_API nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *cudaDriverVersion)
{
    if (cudaDriverVersion == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *cudaDriverVersion = SIM_CUDA_VERSION;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *cudaDriverVersion)
{
    return nvmlSystemGetCudaDriverVersion(cudaDriverVersion);
}

/* ---- finding devices ---- */

NVML_API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *deviceCount)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (deviceCount == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    /* nvml-unknown-error: NVML's catch-all while devices are still binding (transient). */
    if (sim_fault_fire("nvml-unknown-error"))
        return NVML_ERROR_UNKNOWN;
    *deviceCount = SIM_GPU_COUNT;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetCount(unsigned *deviceCount)
{
    return nvmlDeviceGetCount_v2(deviceCount);
}

NVML_API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_t *device)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (device == NULL || index >= SIM_GPU_COUNT)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (gpu_lost(&SIM_GPUS[index]))
        return NVML_ERROR_GPU_IS_LOST;
    *device = &gpu_handles[index];
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned index, nvmlDevice_t *device)
{
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

NVML_API nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    unsigned i, m;
    struct sim_handle *found = NULL;

    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (uuid == NULL || device == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    /* nvml-not-ready: the device is still being bound, so lookups miss for a while. */
    if (sim_fault_fire("nvml-not-ready"))
        return NVML_ERROR_NOT_FOUND;
    for (i = 0; i < SIM_GPU_COUNT && found == NULL; i++) {
        if (strcmp(SIM_GPUS[i].uuid, uuid) == 0)
            found = &gpu_handles[i];
        for (m = 0; m < SIM_GPUS[i].nmig && found == NULL; m++)
            if (strcmp(SIM_GPUS[i].migs[m].uuid, uuid) == 0)
                found = &mig_handles[SIM_GPU_EXTRAS[i].mig_base + m];
    }
    if (found == NULL)
        return NVML_ERROR_NOT_FOUND;
    if (gpu_lost(found->gpu))
        return NVML_ERROR_GPU_IS_LOST;
    *device = found;
    return NVML_SUCCESS;
}

/* Parse "[domain:]bus:device.function" (hex, any case) into its four numbers. */
static int parse_busid(const char *text, unsigned out[4])
{
    char tail;

    if (sscanf(text, "%x:%x:%x.%x%c", &out[0], &out[1], &out[2], &out[3], &tail) == 4)
        return 1;
    out[0] = 0;
    return sscanf(text, "%x:%x.%x%c", &out[1], &out[2], &out[3], &tail) == 3;
}

NVML_API nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *pciBusId, nvmlDevice_t *device)
{
    unsigned want[4], have[4], i;

    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (pciBusId == NULL || device == NULL || !parse_busid(pciBusId, want))
        return NVML_ERROR_INVALID_ARGUMENT;
    for (i = 0; i < SIM_GPU_COUNT; i++) {
        if (!parse_busid(SIM_GPUS[i].busid, have) || memcmp(want, have, sizeof want) != 0)
            continue;
        if (gpu_lost(&SIM_GPUS[i]))
            return NVML_ERROR_GPU_IS_LOST;
        *device = &gpu_handles[i];
        return NVML_SUCCESS;
    }
    return NVML_ERROR_NOT_FOUND;
}

NVML_API nvmlReturn_t nvmlDeviceGetHandleByPciBusId(const char *pciBusId, nvmlDevice_t *device)
{
    return nvmlDeviceGetHandleByPciBusId_v2(pciBusId, device);
}

/* ---- identity ---- */

NVML_API nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned *index)
{
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (index == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    /* A MIG handle's index is its position among its parent's MIG devices, the index
       nvmlDeviceGetMigDeviceHandleByIndex takes (real NVML; NCT names MIG devices by it). */
    if (is_mig_handle(device))
        *index = (unsigned)(device - &mig_handles[device->extra->mig_base]);
    else
        *index = device->gpu->index;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned length)
{
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    return copy_string(uuid, length, device->mig ? device->mig->uuid : device->gpu->uuid);
}

NVML_API nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned *minorNumber)
{
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (minorNumber == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!is_gpu_handle(device))
        return NVML_ERROR_NOT_SUPPORTED;
    *minorNumber = device->gpu->minor;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned length)
{
    char text[160];
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (device->mig == NULL)
        return copy_string(name, length, device->gpu->name);
    snprintf(text, sizeof text, "%s MIG %s", device->gpu->name, device->mig->profile);
    return copy_string(name, length, text);
}

NVML_API nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t device, char *serial, unsigned length)
{
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    return copy_string(serial, length, device->extra->serial);
}

NVML_API nvmlReturn_t nvmlDeviceGetBrand(nvmlDevice_t device, int *type)
{
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (type == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *type = device->gpu->brand;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t device, unsigned *arch)
{
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (arch == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *arch = device->extra->arch;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major,
                                                         int *minor)
{
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (major == NULL || minor == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *major = device->gpu->cc_major;
    *minor = device->gpu->cc_minor;
    return NVML_SUCCESS;
}

/* Fill the fields every nvmlPciInfo_t version shares; v3 also gets the 32-byte busId. */
static nvmlReturn_t pci_info(nvmlDevice_t device, nvmlPciInfo_t *pci, int version)
{
    unsigned parts[4];
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (pci == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    parse_busid(device->gpu->busid, parts);
    memset(pci, 0, version >= 3 ? sizeof *pci : offsetof(nvmlPciInfo_t, busId) + 16);
    /* The legacy field holds the 4-digit-domain form ("0000:07:00.0"). */
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.%X", parts[0],
             parts[1], parts[2], parts[3]);
    pci->domain = parts[0];
    pci->bus = parts[1];
    pci->device = parts[2];
    pci->pciDeviceId = device->extra->pci_device_id;
    pci->pciSubSystemId = device->extra->pci_subsystem_id;
    if (version >= 3)
        snprintf(pci->busId, sizeof pci->busId, "%s", device->gpu->busid);
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    return pci_info(device, pci, 3);
}

NVML_API nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    return pci_info(device, pci, 2);
}

NVML_API nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    return pci_info(device, pci, 1);
}

/* ---- state ---- */

static unsigned long long device_memory(nvmlDevice_t device)
{
    return device->mig ? device->mig->memory_mib * MIB : device->gpu->memory_total;
}

NVML_API nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (memory == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    memory->total = device_memory(device);
    memory->used = 0;
    memory->free = memory->total;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (memory == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (memory->version != nvmlMemory_v2)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    memory->total = device_memory(device);
    memory->reserved = 0;
    memory->used = 0;
    memory->free = memory->total;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t device, unsigned *mode)
{
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (mode == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *mode = device->gpu->persistence_mode;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t device, unsigned *mode)
{
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (mode == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *mode = 0; /* NVML_COMPUTEMODE_DEFAULT */
    return NVML_SUCCESS;
}

/* ---- NUMA ---- */

static const struct sim_numa *numa_of(nvmlDevice_t device)
{
    unsigned i;

    for (i = 0; i < SIM_NUMA_COUNT; i++)
        if (SIM_NUMA[i].id == device->gpu->numa_node)
            return &SIM_NUMA[i];
    return NULL;
}

NVML_API nvmlReturn_t nvmlDeviceGetNumaNodeId(nvmlDevice_t device, unsigned *node)
{
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (node == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (device->gpu->numa_node < 0)
        return NVML_ERROR_NOT_SUPPORTED;
    *node = (unsigned)device->gpu->numa_node;
    return NVML_SUCCESS;
}

/* The CPUs of the GPU's NUMA node as a bitmask of cpuSetSize 64-bit words (all CPUs when the
   GPU has no node). */
NVML_API nvmlReturn_t nvmlDeviceGetCpuAffinity(nvmlDevice_t device, unsigned cpuSetSize,
                                               unsigned long *cpuSet)
{
    const struct sim_numa *node;
    unsigned i, n;
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (cpuSet == NULL || cpuSetSize == 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    memset(cpuSet, 0, cpuSetSize * sizeof *cpuSet);
    node = numa_of(device);
    for (i = 0; i < SIM_CPU_WORDS && i < cpuSetSize; i++) {
        if (node != NULL) {
            cpuSet[i] = (unsigned long)node->mask[i];
            continue;
        }
        for (n = 0; n < SIM_NUMA_COUNT; n++)
            cpuSet[i] |= (unsigned long)SIM_NUMA[n].mask[i];
    }
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetCpuAffinityWithinScope(nvmlDevice_t device,
                                                          unsigned cpuSetSize,
                                                          unsigned long *cpuSet, unsigned scope)
{
    (void)scope; /* one socket per NUMA node here, so both scopes agree */
    return nvmlDeviceGetCpuAffinity(device, cpuSetSize, cpuSet);
}

NVML_API nvmlReturn_t nvmlDeviceGetMemoryAffinity(nvmlDevice_t device, unsigned nodeSetSize,
                                                  unsigned long *nodeSet, unsigned scope)
{
    int id;
    nvmlReturn_t rc = check_device(device);

    (void)scope;
    if (rc != NVML_SUCCESS)
        return rc;
    if (nodeSet == NULL || nodeSetSize == 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    memset(nodeSet, 0, nodeSetSize * sizeof *nodeSet);
    id = device->gpu->numa_node;
    if (id >= 0 && (unsigned)id / 64 < nodeSetSize)
        nodeSet[id / 64] = 1UL << (id % 64);
    return NVML_SUCCESS;
}

/* ---- MIG ---- */

NVML_API nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned *currentMode,
                                           unsigned *pendingMode)
{
    nvmlReturn_t rc = check_gpu(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (currentMode == NULL || pendingMode == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (device->gpu->max_mig == 0)
        return NVML_ERROR_NOT_SUPPORTED;
    *currentMode = (unsigned)device->gpu->mig_mode;
    *pendingMode = (unsigned)device->gpu->mig_mode;
    return NVML_SUCCESS;
}

/* Zero unless MIG mode is on, as NVML documents. */
NVML_API nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned *count)
{
    nvmlReturn_t rc = check_gpu(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (count == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *count = device->gpu->mig_mode ? device->gpu->max_mig : 0;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned index,
                                                          nvmlDevice_t *migDevice)
{
    nvmlReturn_t rc = check_gpu(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (migDevice == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!device->gpu->mig_mode)
        return device->gpu->max_mig ? NVML_ERROR_NOT_FOUND : NVML_ERROR_NOT_SUPPORTED;
    if (index >= device->gpu->max_mig)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (index >= device->gpu->nmig)
        return NVML_ERROR_NOT_FOUND; /* an empty slot */
    *migDevice = &mig_handles[device->extra->mig_base + index];
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned *isMigDevice)
{
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (isMigDevice == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *isMigDevice = device->mig != NULL;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t migDevice,
                                                                   nvmlDevice_t *device)
{
    nvmlReturn_t rc = check_device(migDevice);

    if (rc != NVML_SUCCESS)
        return rc;
    if (device == NULL || migDevice->mig == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = migDevice->parent;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned *id)
{
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (id == NULL || device->mig == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *id = device->mig->gi_id;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned *id)
{
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (id == NULL || device->mig == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *id = device->mig->ci_id;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetAttributes_v2(nvmlDevice_t device,
                                                 nvmlDeviceAttributes_t *attributes)
{
    const struct sim_profile *profile;
    nvmlReturn_t rc = check_device(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (attributes == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    memset(attributes, 0, sizeof *attributes);
    if (device->mig == NULL) {
        attributes->multiprocessorCount = device->extra->multiprocessor_count;
        attributes->memorySizeMB = device->gpu->memory_total / MIB;
        return NVML_SUCCESS;
    }
    profile = profile_by_id(device, device->mig->profile_id);
    if (profile != NULL) {
        attributes->multiprocessorCount = profile->multiprocessor_count;
        attributes->sharedCopyEngineCount = profile->copy_engine_count;
        attributes->sharedDecoderCount = profile->decoder_count;
        attributes->sharedEncoderCount = profile->encoder_count;
        attributes->sharedJpegCount = profile->jpeg_count;
        attributes->sharedOfaCount = profile->ofa_count;
    }
    attributes->gpuInstanceSliceCount = device->mig->slice_count;
    attributes->computeInstanceSliceCount = device->mig->slice_count;
    attributes->memorySizeMB = device->mig->memory_mib;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetAttributes(nvmlDevice_t device,
                                              nvmlDeviceAttributes_t *attributes)
{
    return nvmlDeviceGetAttributes_v2(device, attributes);
}

/* Common part of the profile-info calls: the profile with enum index `index` on a MIG GPU. */
static nvmlReturn_t find_profile(nvmlDevice_t device, unsigned index, int by_id,
                                 const struct sim_profile **out)
{
    nvmlReturn_t rc = check_gpu(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (device->gpu->max_mig == 0)
        return NVML_ERROR_NOT_SUPPORTED;
    *out = by_id ? profile_by_id(device, index) : profile_by_index(device, index);
    if (*out == NULL)
        return by_id ? NVML_ERROR_INVALID_ARGUMENT : NVML_ERROR_NOT_SUPPORTED;
    return NVML_SUCCESS;
}

static void fill_profile_v2(const struct sim_profile *p, nvmlGpuInstanceProfileInfo_v2_t *info)
{
    info->id = p->id;
    info->isP2pSupported = 0;
    info->sliceCount = p->slice_count;
    info->instanceCount = p->instance_count;
    info->multiprocessorCount = p->multiprocessor_count;
    info->copyEngineCount = p->copy_engine_count;
    info->decoderCount = p->decoder_count;
    info->encoderCount = p->encoder_count;
    info->jpegCount = p->jpeg_count;
    info->ofaCount = p->ofa_count;
    info->memorySizeMB = p->memory_mib;
    snprintf(info->name, sizeof info->name, "%s", p->name);
}

NVML_API nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfo(nvmlDevice_t device, unsigned profile,
                                                          nvmlGpuInstanceProfileInfo_t *info)
{
    const struct sim_profile *p;
    nvmlGpuInstanceProfileInfo_v2_t full;
    nvmlReturn_t rc;

    if (info == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    rc = find_profile(device, profile, 0, &p);
    if (rc != NVML_SUCCESS)
        return rc;
    fill_profile_v2(p, &full);
    /* v1 is v2 without the leading version and the trailing name. */
    memcpy(info, &full.id, sizeof *info);
    info->memorySizeMB = full.memorySizeMB;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfoV(nvmlDevice_t device, unsigned profile,
                                                           nvmlGpuInstanceProfileInfo_v2_t *info)
{
    const struct sim_profile *p;
    nvmlReturn_t rc;

    if (info == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (info->version != nvmlGpuInstanceProfileInfo_v2)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    rc = find_profile(device, profile, 0, &p);
    if (rc != NVML_SUCCESS)
        return rc;
    fill_profile_v2(p, info);
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfoByIdV(
    nvmlDevice_t device, unsigned profileId, nvmlGpuInstanceProfileInfo_v2_t *info)
{
    const struct sim_profile *p;
    nvmlReturn_t rc;

    if (info == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (info->version != nvmlGpuInstanceProfileInfo_v2)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    rc = find_profile(device, profileId, 1, &p);
    if (rc != NVML_SUCCESS)
        return rc;
    fill_profile_v2(p, info);
    return NVML_SUCCESS;
}

static struct sim_gi *gi_of(nvmlDevice_t device, unsigned id)
{
    unsigned m;

    for (m = 0; m < device->gpu->nmig; m++)
        if (device->gpu->migs[m].gi_id == id)
            return &gi_handles[device->extra->mig_base + m];
    return NULL;
}

NVML_API nvmlReturn_t nvmlDeviceGetGpuInstanceById(nvmlDevice_t device, unsigned id,
                                                   nvmlGpuInstance_t *gpuInstance)
{
    struct sim_gi *gi;
    nvmlReturn_t rc = check_gpu(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (gpuInstance == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (device->gpu->max_mig == 0)
        return NVML_ERROR_NOT_SUPPORTED;
    if (!device->gpu->mig_mode)
        return NVML_ERROR_INVALID_STATE;
    gi = gi_of(device, id);
    if (gi == NULL)
        return NVML_ERROR_NOT_FOUND;
    *gpuInstance = gi;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlDeviceGetGpuInstances(nvmlDevice_t device, unsigned profileId,
                                                nvmlGpuInstance_t *gpuInstances, unsigned *count)
{
    unsigned m, found = 0;
    nvmlReturn_t rc = check_gpu(device);

    if (rc != NVML_SUCCESS)
        return rc;
    if (gpuInstances == NULL || count == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (device->gpu->max_mig == 0)
        return NVML_ERROR_NOT_SUPPORTED;
    if (profile_by_id(device, profileId) == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    for (m = 0; m < device->gpu->nmig; m++)
        if (device->gpu->migs[m].profile_id == profileId)
            gpuInstances[found++] = &gi_handles[device->extra->mig_base + m];
    *count = found;
    return NVML_SUCCESS;
}

static int valid_gi(const struct sim_gi *gi)
{
    return SIM_MIG_COUNT > 0 && gi >= gi_handles && gi < gi_handles + SIM_MIG_COUNT &&
           gi->mig != NULL;
}

NVML_API nvmlReturn_t nvmlGpuInstanceGetInfo(nvmlGpuInstance_t gpuInstance,
                                             nvmlGpuInstanceInfo_t *info)
{
    const struct sim_profile *profile;

    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (info == NULL || !valid_gi(gpuInstance))
        return NVML_ERROR_INVALID_ARGUMENT;
    if (gpu_lost(gpuInstance->mig->gpu))
        return NVML_ERROR_GPU_IS_LOST;
    profile = profile_by_id(gpuInstance->mig, gpuInstance->mig->mig->profile_id);
    info->device = gpuInstance->mig->parent;
    info->id = gpuInstance->mig->mig->gi_id;
    info->profileId = gpuInstance->mig->mig->profile_id;
    info->placement.start = gpuInstance->mig->mig->placement_start;
    info->placement.size = profile ? profile->placement_size : gpuInstance->mig->mig->slice_count;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlGpuInstanceGetComputeInstanceById(nvmlGpuInstance_t gpuInstance,
                                                            unsigned id,
                                                            nvmlComputeInstance_t *computeInstance)
{
    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (computeInstance == NULL || !valid_gi(gpuInstance))
        return NVML_ERROR_INVALID_ARGUMENT;
    if (gpu_lost(gpuInstance->mig->gpu))
        return NVML_ERROR_GPU_IS_LOST;
    if (gpuInstance->mig->mig->ci_id != id)
        return NVML_ERROR_NOT_FOUND;
    *computeInstance = &ci_handles[gpuInstance - gi_handles];
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlComputeInstanceGetInfo_v2(nvmlComputeInstance_t computeInstance,
                                                    nvmlComputeInstanceInfo_t *info)
{
    const struct sim_handle *mig;

    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (info == NULL || SIM_MIG_COUNT == 0 || computeInstance < ci_handles ||
        computeInstance >= ci_handles + SIM_MIG_SLOTS || computeInstance->mig == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    mig = computeInstance->mig;
    if (gpu_lost(mig->gpu))
        return NVML_ERROR_GPU_IS_LOST;
    info->device = mig->parent;
    info->gpuInstance = &gi_handles[computeInstance - ci_handles];
    info->id = mig->mig->ci_id;
    /* Compute-instance profile enum of a whole-GI compute instance: slices 1,2,3,4,7 map to
       NVML_COMPUTE_INSTANCE_PROFILE_{1,2,3,4,7}_SLICE = 0,1,2,3,4. */
    info->profileId = mig->mig->slice_count == 7 ? 4 : mig->mig->slice_count - 1;
    info->placement.start = 0;
    info->placement.size = mig->mig->slice_count;
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlComputeInstanceGetInfo(nvmlComputeInstance_t computeInstance,
                                                 nvmlComputeInstanceInfo_t *info)
{
    return nvmlComputeInstanceGetInfo_v2(computeInstance, info);
}

/* ---- compute-instance profiles and listings ---- */

typedef struct {
    unsigned id, sliceCount, instanceCount, multiprocessorCount, sharedCopyEngineCount,
        sharedDecoderCount, sharedEncoderCount, sharedJpegCount, sharedOfaCount;
} nvmlComputeInstanceProfileInfo_t;

typedef struct {
    unsigned version, id, sliceCount, instanceCount, multiprocessorCount, sharedCopyEngineCount,
        sharedDecoderCount, sharedEncoderCount, sharedJpegCount, sharedOfaCount;
    char name[96];
} nvmlComputeInstanceProfileInfo_v2_t;
#define nvmlComputeInstanceProfileInfo_v2 \
    NVML_STRUCT_VERSION(sizeof(nvmlComputeInstanceProfileInfo_v2_t), 2)

typedef struct {
    unsigned version, id, sliceCount, instanceCount, multiprocessorCount, sharedCopyEngineCount,
        sharedDecoderCount, sharedEncoderCount, sharedJpegCount, sharedOfaCount;
    char name[96];
    unsigned capabilities;
} nvmlComputeInstanceProfileInfo_v3_t;
#define nvmlComputeInstanceProfileInfo_v3 \
    NVML_STRUCT_VERSION(sizeof(nvmlComputeInstanceProfileInfo_v3_t), 3)

/* NVML_COMPUTE_INSTANCE_PROFILE_{1,2,3,4,7}_SLICE = 0..4: the profiles a GPU instance of the
   simulated (A100-class) GPUs offers; the others (8, 6 slices, REV1/REV2) are NOT_SUPPORTED. */
#define SIM_CI_PROFILE_COUNT 10
#define SIM_CI_ENGINE_PROFILE_COUNT 1
static const unsigned ci_profile_slices[] = {1, 2, 3, 4, 7};

/* Fill `info` (the v3 layout, a superset) for CI profile `profile` of a GPU instance. */
static nvmlReturn_t ci_profile(const struct sim_gi *gi, unsigned profile, unsigned engine,
                               nvmlComputeInstanceProfileInfo_v3_t *info)
{
    const struct sim_mig *mig;
    const struct sim_profile *gip;
    unsigned slices, gi_slices;

    if (!initialized())
        return NVML_ERROR_UNINITIALIZED;
    if (!valid_gi(gi) || profile >= SIM_CI_PROFILE_COUNT ||
        engine >= SIM_CI_ENGINE_PROFILE_COUNT)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (gpu_lost(gi->mig->gpu))
        return NVML_ERROR_GPU_IS_LOST;
    mig = gi->mig->mig;
    gi_slices = mig->slice_count;
    if (profile >= sizeof ci_profile_slices / sizeof *ci_profile_slices)
        return NVML_ERROR_NOT_SUPPORTED;
    slices = ci_profile_slices[profile];
    /* A GPU instance splits into compute instances of whole slices it can hold; a 4-slice
       instance has no 3-slice profile (nvidia-smi mig -lcip on an A100). */
    if (slices > gi_slices || (gi_slices == 4 && slices == 3))
        return NVML_ERROR_NOT_SUPPORTED;
    gip = profile_by_id(gi->mig, mig->profile_id);
    memset(info, 0, sizeof *info);
    info->id = profile;
    info->sliceCount = slices;
    info->instanceCount = gi_slices / slices;
    info->multiprocessorCount = gip ? gip->multiprocessor_count * slices / gi_slices : 0;
    if (gip != NULL) {
        info->sharedCopyEngineCount = gip->copy_engine_count;
        info->sharedDecoderCount = gip->decoder_count;
        info->sharedEncoderCount = gip->encoder_count;
        info->sharedJpegCount = gip->jpeg_count;
        info->sharedOfaCount = gip->ofa_count;
    }
    /* "MIG 1c.3g.20gb": the GPU instance's name with the compute slices in front. */
    if (slices == gi_slices)
        snprintf(info->name, sizeof info->name, "MIG %s", mig->profile);
    else
        snprintf(info->name, sizeof info->name, "MIG %uc.%s", slices, mig->profile);
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlGpuInstanceGetComputeInstanceProfileInfo(
    nvmlGpuInstance_t gpuInstance, unsigned profile, unsigned engProfile,
    nvmlComputeInstanceProfileInfo_t *info)
{
    nvmlComputeInstanceProfileInfo_v3_t full;
    nvmlReturn_t rc;

    if (info == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    rc = ci_profile(gpuInstance, profile, engProfile, &full);
    if (rc != NVML_SUCCESS)
        return rc;
    /* v1 is v2 without the leading version and the trailing name. */
    memcpy(info, &full.id, sizeof *info);
    return NVML_SUCCESS;
}

NVML_API nvmlReturn_t nvmlGpuInstanceGetComputeInstanceProfileInfoV(
    nvmlGpuInstance_t gpuInstance, unsigned profile, unsigned engProfile,
    nvmlComputeInstanceProfileInfo_v2_t *info)
{
    nvmlComputeInstanceProfileInfo_v3_t full;
    nvmlReturn_t rc;
    unsigned version;

    if (info == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    version = info->version;
    if (version != nvmlComputeInstanceProfileInfo_v2 &&
        version != nvmlComputeInstanceProfileInfo_v3)
        return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    rc = ci_profile(gpuInstance, profile, engProfile, &full);
    if (rc != NVML_SUCCESS)
        return rc;
    full.version = version;
    memcpy(info, &full, version == nvmlComputeInstanceProfileInfo_v3
                            ? sizeof full : sizeof(nvmlComputeInstanceProfileInfo_v2_t));
    return NVML_SUCCESS;
}

/* The compute-instance profile enum of a MIG device (its CI spans the whole GPU instance). */
static unsigned ci_profile_of(const struct sim_mig *mig)
{
    return mig->slice_count == 7 ? 4 : mig->slice_count - 1;
}

NVML_API nvmlReturn_t nvmlGpuInstanceGetComputeInstances(nvmlGpuInstance_t gpuInstance,
                                                         unsigned profileId,
                                                         nvmlComputeInstance_t *computeInstances,
                                                         unsigned *count)
{
    nvmlComputeInstanceProfileInfo_v3_t info;
    nvmlReturn_t rc;

    if (computeInstances == NULL || count == NULL)
        return initialized() ? NVML_ERROR_INVALID_ARGUMENT : NVML_ERROR_UNINITIALIZED;
    rc = ci_profile(gpuInstance, profileId, 0, &info);
    if (rc != NVML_SUCCESS)
        return rc;
    *count = 0;
    if (ci_profile_of(gpuInstance->mig->mig) == profileId) {
        computeInstances[0] = &ci_handles[gpuInstance - gi_handles];
        *count = 1;
    }
    return NVML_SUCCESS;
}
