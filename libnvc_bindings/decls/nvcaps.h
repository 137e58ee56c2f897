/* From 1.3 (declared for the whole 1.1-1.4 generation; hidden when the library lacks them). */
int nvc_nvcaps_style(void);
int nvc_nvcaps_device_from_proc_path(struct nvc_context *, const char *,
                                     struct nvc_device_node *);
