/* The library does not copy rootfs/ldconfig until nvc_container_new(): strings set here must
   outlive the struct. */
struct nvc_container_config {
    pid_t pid;
    char *rootfs;
    char *bins_dir;
    char *libs_dir;
    char *libs32_dir;
    char *cudart_dir;
    char *ldconfig;
};
