/* Work done inside a container's mount namespace, the way the real library does it: a forked
 * child first opens what it needs on the host, then joins the namespace (setns on the fd held
 * since nvc_container_new), opens the rootfs there and does the work; the caller's own
 * namespace and threads are never touched. */
#ifndef HEADER_NVC_NS_H
#define HEADER_NVC_NS_H

#include "nvc_internal.h"

struct nvc_ns_job {
    const char *name;                                  /* for "process NAME failed ..." */
    int (*host)(void *arg, struct nvc_err *err);       /* before setns, may be NULL */
    int (*work)(void *arg, int root_fd, struct nvc_err *err);
    void *arg;
};

/* 0 when the child succeeded; otherwise -1 with the child's message in ctx's error. */
int nvc_ns_run(struct nvc_context *ctx, const struct nvc_container *cnt, const struct nvc_ns_job *job);

#endif /* HEADER_NVC_NS_H */
