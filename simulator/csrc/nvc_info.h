/* What nvc_info.c shares with the mount code: which driver files each capability selects,
 * and how a proc capability file names its /dev/nvidia-caps node. */
#ifndef HEADER_NVC_INFO_H
#define HEADER_NVC_INFO_H

#include <stdbool.h>
#include <stddef.h>

#include "nvc.h"

struct nvc_file_class {
    const char *name;  /* library name up to ".so" (matched as a prefix), or binary name */
    int flags;         /* the container OPT_* flags that select it */
    bool glvnd;        /* left out by the no-glvnd driver option */
};

extern const struct nvc_file_class nvc_libraries[];
extern const size_t nvc_nlibraries;
extern const struct nvc_file_class nvc_binaries[];
extern const size_t nvc_nbinaries;

/* The OPT_* flags selecting a driver file by its base name; 0 for a file we do not know. */
int nvc_file_flags(const char *name);

/* The device node named by a proc capability file (node->path is allocated). */
int nvc_caps_node(struct nvc_context *, const char *proc_path, struct nvc_device_node *);

#endif /* HEADER_NVC_INFO_H */
