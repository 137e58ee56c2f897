/* 1.15 on: the IMEX channel list follows gid (40 bytes); only nvc_config_new() knows how to
   initialise it, which is why configs are never allocated by us. The channel layout is left
   opaque: nothing here reads or builds channels. */
struct nvc_imex_channel;

struct nvc_imex_info {
    struct nvc_imex_channel *chans;
    size_t nchans;
};

struct nvc_config {
    char *root;
    char *ldcache;
    uid_t uid;
    gid_t gid;
    struct nvc_imex_info imex;
};
