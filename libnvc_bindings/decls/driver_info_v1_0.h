/* 1.0 to 1.4: 96 bytes. */
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
};
