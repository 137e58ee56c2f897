/* See nvc_ns.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nvc_ns.h"

#define MESSAGE_MAX 4096

static void write_all(int fd, const char *buf, size_t len)
{
    ssize_t n;

    while (len > 0) {
        n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

static void __attribute__((noreturn)) child(const struct nvc_container *cnt, const struct nvc_ns_job *job, int out)
{
    struct nvc_err err = {0};
    int root;

    if (job->host != NULL && job->host(job->arg, &err) < 0)
        goto fail;
    if (setns(cnt->mnt_ns, CLONE_NEWNS) < 0) {
        nvc_err_set(&err, "namespace association failed");
        goto fail;
    }
    if ((root = open(cnt->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
        nvc_err_set(&err, "open failed: %s", cnt->rootfs);
        goto fail;
    }
    if (job->work(job->arg, root, &err) < 0)
        goto fail;
    _exit(EXIT_SUCCESS);

fail:
    if (err.msg != NULL)
        write_all(out, err.msg, strlen(err.msg));
    _exit(EXIT_FAILURE);
}

/* A container sharing the caller's mount namespace would get its mounts on the host itself
   (and keep them after it is gone); the real engines always give containers their own. */
static int own_namespace(struct nvc_context *ctx, const struct nvc_container *cnt)
{
    struct stat mine, theirs;

    if (stat("/proc/self/ns/mnt", &mine) < 0 || fstat(cnt->mnt_ns, &theirs) < 0) {
        nvc_err_set(&ctx->err, "stat failed: mount namespace");
        return -1;
    }
    if (mine.st_dev == theirs.st_dev && mine.st_ino == theirs.st_ino) {
        nvc_err_setx(&ctx->err, "container process %d shares the caller's mount namespace; "
                                "refusing to mount into it", (int)cnt->pid);
        return -1;
    }
    return 0;
}

int nvc_ns_run(struct nvc_context *ctx, const struct nvc_container *cnt, const struct nvc_ns_job *job)
{
    char message[MESSAGE_MAX];
    size_t used = 0;
    int fds[2], status;
    ssize_t n;
    pid_t pid;

    if (own_namespace(ctx, cnt) < 0)
        return -1;
    if (pipe2(fds, O_CLOEXEC) < 0) {
        nvc_err_set(&ctx->err, "process creation failed");
        return -1;
    }
    if ((pid = fork()) < 0) {
        nvc_err_set(&ctx->err, "process creation failed");
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        child(cnt, job, fds[1]);
    }
    close(fds[1]);
    for (;;) {
        n = read(fds[0], message + used, sizeof(message) - 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        used += (size_t)n;
        if (used == sizeof(message) - 1)
            break;
    }
    message[used] = '\0';
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            nvc_err_set(&ctx->err, "process reaping failed");
            return -1;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (used > 0)
        nvc_err_setx(&ctx->err, "%s", message);
    else if (WIFSIGNALED(status))
        nvc_err_setx(&ctx->err, "process %s terminated with signal %d", job->name, WTERMSIG(status));
    else
        nvc_err_setx(&ctx->err, "process %s failed with error code: %d", job->name, WEXITSTATUS(status));
    return -1;
}
