/* Updating the container's ld.so.cache with the HOST's ldconfig.
 *
 * Nothing from the image is ever executed: the ldconfig binary is opened on the host before
 * the child joins the container (a leading '@', the real library's "host path" marker, is
 * accepted and means the same), it must be a static executable (a dynamic one would load the
 * image's ld.so, a script the image's interpreter), and it is run with fexecve semantics
 * (execveat on that fd) after chroot into the rootfs, with an empty environment, no
 * inherited descriptors beyond /dev/null, limited resources and no capabilities but
 * CAP_DAC_OVERRIDE (which the real library keeps for the same reason).
 *
 * CUDA forward compatibility (cuda-compat-mode=ldconfig, from 1.17.7): when the image's
 * <cudart_dir>/compat, resolved inside the rootfs, holds a regular file libcuda.so.<M>.<m>...
 * whose major M is newer than the host driver's, that directory goes FIRST on ldconfig's
 * command line (ldconfig keeps the first directory's library for a SONAME, so the cache names
 * the compat libcuda.so.1). Anything else (no such directory, only symlinks, an older or equal
 * major, a path leading out of the rootfs) leaves the command line as without the option.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "nvc_fs.h"
#include "nvc_internal.h"
#include "nvc_ns.h"

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#define NVC_CLOSE_RANGE_CLOEXEC (1U << 2)
#define NVC_CAP_DAC_OVERRIDE 1

#define LDCONFIG_DIRS_AT 5 /* argv index of the first directory */

struct ldconfig_job {
    int exe;
    int devnull;
    const char *compat_dir; /* NULL unless cuda-compat-mode=ldconfig */
    unsigned long driver_major;
    char *argv[9];
};

/* The major M of "libcuda.so.M.m[...]", or 0 when name is not spelled so. */
static unsigned long libcuda_major(const char *name)
{
    static const char prefix[] = "libcuda.so.";
    unsigned long major;
    char *end;

    if (strncmp(name, prefix, sizeof(prefix) - 1) != 0)
        return 0;
    name += sizeof(prefix) - 1;
    if (*name < '0' || *name > '9')
        return 0;
    errno = 0;
    major = strtoul(name, &end, 10);
    if (errno != 0 || end[0] != '.' || end[1] < '0' || end[1] > '9')
        return 0;
    return major;
}

/* 1 when dir (inside root) holds a regular libcuda.so.M.m... with M > driver_major. */
static int compat_is_newer(int root, const char *dir, unsigned long driver_major)
{
    struct dirent *entry;
    struct stat s;
    DIR *listing;
    int fd, found = 0;

    if ((fd = nvc_open_in_root(root, dir, O_RDONLY | O_DIRECTORY, 0)) < 0)
        return 0;
    if ((listing = fdopendir(fd)) == NULL) {
        close(fd);
        return 0;
    }
    while (!found && (entry = readdir(listing)) != NULL) {
        if (libcuda_major(entry->d_name) > driver_major &&
            fstatat(dirfd(listing), entry->d_name, &s, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(s.st_mode))
            found = 1;
    }
    closedir(listing);
    return found;
}

/* The compat directory goes before the library directories (see the top of this file). */
static void prefer_compat(struct ldconfig_job *j, int root)
{
    if (j->compat_dir == NULL || !compat_is_newer(root, j->compat_dir, j->driver_major))
        return;
    memmove(&j->argv[LDCONFIG_DIRS_AT + 1], &j->argv[LDCONFIG_DIRS_AT],
            (sizeof(j->argv) / sizeof(j->argv[0]) - LDCONFIG_DIRS_AT - 1) * sizeof(j->argv[0]));
    j->argv[LDCONFIG_DIRS_AT] = (char *)j->compat_dir;
}

/* 0 when fd is an ELF executable without a program interpreter. */
static int check_static(struct nvc_err *err, int fd, const char *path)
{
    Elf64_Ehdr eh;
    Elf64_Phdr ph;
    struct stat s;

    if (fstat(fd, &s) < 0 || !S_ISREG(s.st_mode) || !(s.st_mode & 0111)) {
        nvc_err_setx(err, "ldconfig is not an executable file: %s", path);
        return -1;
    }
    if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
        eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(ph)) {
        nvc_err_setx(err, "ldconfig is not a static executable: %s", path);
        return -1;
    }
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + (Elf64_Off)i * sizeof(ph))) != (ssize_t)sizeof(ph) ||
            ph.p_type == PT_INTERP) {
            nvc_err_setx(err, "ldconfig is not a static executable: %s", path);
            return -1;
        }
    }
    return 0;
}

static int limit_resources(void)
{
    struct rlimit cpu = {10, 10}, as = {2ULL << 30, 2ULL << 30}, nofile = {64, 64}, fsize = {64 << 20, 64 << 20};

    return (setrlimit(RLIMIT_CPU, &cpu) < 0 || setrlimit(RLIMIT_AS, &as) < 0 || setrlimit(RLIMIT_NOFILE, &nofile) < 0 ||
            setrlimit(RLIMIT_FSIZE, &fsize) < 0)
               ? -1
               : 0;
}

/* Child, inside the container's mount namespace: confine, then become ldconfig. */
static int run_ldconfig(void *arg, int root, struct nvc_err *err)
{
    struct ldconfig_job *j = arg;
    char *const envp[] = {NULL};

    prefer_compat(j, root);
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 || fchdir(root) < 0 ||
        chroot(".") < 0 || chdir("/") < 0) {
        nvc_err_set(err, "process confinement failed");
        return -1;
    }
    if (dup2(j->devnull, STDIN_FILENO) < 0 || dup2(j->devnull, STDOUT_FILENO) < 0 ||
        dup2(j->devnull, STDERR_FILENO) < 0) {
        nvc_err_set(err, "file duplication failed");
        return -1;
    }
    for (int cap = 0; cap < 64; ++cap) {
        if (cap != NVC_CAP_DAC_OVERRIDE && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
            nvc_err_set(err, "capability change failed");
            return -1;
        }
    }
    if (limit_resources() < 0) {
        nvc_err_set(err, "resource limiting failed");
        return -1;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        nvc_err_set(err, "privilege change failed");
        return -1;
    }
    /* Whatever the caller left open without O_CLOEXEC must not reach ldconfig. */
    syscall(SYS_close_range, 3U, ~0U, NVC_CLOSE_RANGE_CLOEXEC);
    syscall(SYS_execveat, j->exe, "", j->argv, envp, AT_EMPTY_PATH);
    nvc_err_set(err, "process execution failed");
    return -1;
}

int nvc_ldcache_update(struct nvc_context *ctx, const struct nvc_container *cnt)
{
    struct ldconfig_job j = {-1, -1, NULL, 0, {NULL}};
    struct nvc_ns_job job;
    const char *path;
    int rv = -1;

    if (nvc_validate_context(ctx) < 0)
        return -1;
    if (nvc_validate_args(ctx, cnt != NULL && cnt->ldconfig != NULL) < 0)
        return -1;
    path = cnt->ldconfig[0] == '@' ? cnt->ldconfig + 1 : cnt->ldconfig;
    if (nvc_validate_args(ctx, path[0] == '/') < 0)
        return -1;
    if ((j.exe = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        nvc_err_set(&ctx->err, "open failed: %s", path);
        return -1;
    }
    if (check_static(&ctx->err, j.exe, path) < 0)
        goto out;
    if ((j.devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) {
        nvc_err_set(&ctx->err, "open failed: /dev/null");
        goto out;
    }
    j.argv[0] = (char *)path;
    j.argv[1] = "-f";
    j.argv[2] = "/etc/ld.so.conf";
    j.argv[3] = "-C";
    j.argv[4] = "/etc/ld.so.cache";
    j.argv[LDCONFIG_DIRS_AT] = cnt->libs_dir;
    j.argv[LDCONFIG_DIRS_AT + 1] = cnt->libs32_dir;
    j.argv[LDCONFIG_DIRS_AT + 2] = NULL;
    j.compat_dir = cnt->cuda_compat_dir;
    j.driver_major = strtoul(nvc_sim_driver_version(), NULL, 10);
    job = (struct nvc_ns_job){path, NULL, run_ldconfig, &j};
    rv = nvc_ns_run(ctx, cnt, &job);
out:
    if (j.devnull >= 0)
        close(j.devnull);
    close(j.exe);
    return rv;
}
