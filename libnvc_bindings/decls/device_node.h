struct nvc_device_node {
    char *path;
    dev_t id;
};
