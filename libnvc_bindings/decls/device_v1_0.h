/* 1.0: no MIG (56 bytes). */
struct nvc_device {
    char *model;
    char *uuid;
    char *busid;
    char *arch;
    char *brand;
    struct nvc_device_node node;
};

struct nvc_device_info {
    struct nvc_device *gpus;
    size_t ngpus;
};
