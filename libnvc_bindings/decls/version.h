/* Same layout in every release: the loader reads it before it knows the generation. */
struct nvc_version {
    unsigned int major;
    unsigned int minor;
    unsigned int patch;
    const char *string;
};

const struct nvc_version *nvc_version(void);
