/* See nvc_ns.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int nvc_ns_run(struct nvc_context *ctx, const struct nvc_container *cnt, const struct nvc_ns_job *job)
{
    char message[MESSAGE_MAX];
    size_t used = 0;
    int fds[2], status;
    ssize_t n;
    pid_t pid;

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
