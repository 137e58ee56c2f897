/* From 1.15. */
int nvc_imex_channel_mount(struct nvc_context *, const struct nvc_container *,
                           const struct nvc_imex_channel *);
