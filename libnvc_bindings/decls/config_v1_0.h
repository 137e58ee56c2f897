/* 1.0 to 1.14: 24 bytes. */
struct nvc_config {
    char *root;
    char *ldcache;
    uid_t uid;
    gid_t gid;
};
