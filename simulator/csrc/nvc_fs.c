/* In-root resolution and fd-based mounting; see nvc_fs.h for the rules. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "nvc_fs.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

/* Constants of <linux/openat2.h> and <linux/mount.h>, spelled out to stay clear of the
   glibc/kernel header clash. */
#define NVC_RESOLVE_NO_MAGICLINKS 0x02
#define NVC_RESOLVE_IN_ROOT 0x10
#define NVC_OPEN_TREE_CLONE 1
#define NVC_OPEN_TREE_CLOEXEC O_CLOEXEC
#define NVC_AT_RECURSIVE 0x8000
#define NVC_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define NVC_MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#define NVC_FSOPEN_CLOEXEC 0x00000001
#define NVC_FSMOUNT_CLOEXEC 0x00000001
#define NVC_FSCONFIG_SET_STRING 1
#define NVC_FSCONFIG_CMD_CREATE 6
#define NVC_PROC_SUPER_MAGIC 0x9fa0
#define NVC_MAX_SYMLINKS 40

struct nvc_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

struct nvc_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

long nvc_fs_magic(int fd)
{
    struct statfs s;

    if (fstatfs(fd, &s) < 0)
        return 0;
    return (long)s.f_type;
}

/* A directory stack for the user-space walk: top is the current directory, bottom the root. */
struct walk_stack {
    int *fds;
    size_t n, cap;
};

static void stack_clear(struct walk_stack *st, size_t keep)
{
    while (st->n > keep)
        close(st->fds[--st->n]);
}

static int stack_push(struct walk_stack *st, int fd)
{
    int *grown;

    if (st->n == st->cap) {
        st->cap = st->cap ? st->cap * 2 : 16;
        if ((grown = realloc(st->fds, st->cap * sizeof(*grown))) == NULL) {
            close(fd);
            return -1;
        }
        st->fds = grown;
    }
    st->fds[st->n++] = fd;
    return 0;
}

/* Replace the unresolved remainder `rest` by link target + "/" + rest. */
static char *splice_link(const char *target, const char *rest)
{
    size_t lt = strlen(target), lr = strlen(rest);
    char *out = malloc(lt + lr + 2);

    if (out == NULL)
        return NULL;
    memcpy(out, target, lt);
    out[lt] = '/';
    memcpy(out + lt + 1, rest, lr + 1);
    return out;
}

/* The user-space twin of openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS). With mkdir_mode >= 0
   every missing component is made a directory on the way (links are still followed inside the
   root, so a dangling link gets its target made under the root, never outside it). */
static int walk_in_root(int root_fd, const char *path, int flags, mode_t mode, int mkdir_mode)
{
    struct walk_stack st = {0};
    char *work, *rest, *comp, *spliced, target[PATH_MAX];
    int fd = -1, links = 0, saved, ret = -1;
    struct stat s;
    ssize_t len;
    bool last;

    if ((work = strdup(path)) == NULL)
        return -1;
    rest = work;
    if ((fd = openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 || stack_push(&st, fd) < 0)
        goto out;

    for (;;) {
        while (*rest == '/')
            ++rest;
        if (*rest == '\0') {
            /* Path ended on a directory (or was empty): reopen it with the caller's flags. */
            ret = openat(st.fds[st.n - 1], ".", (flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW)) | O_CLOEXEC);
            goto out;
        }
        comp = rest;
        rest += strcspn(rest, "/");
        last = (*rest == '\0');
        if (!last)
            *rest++ = '\0';
        while (*rest == '/')
            ++rest;
        if (*rest == '\0')
            last = true;

        if (strcmp(comp, ".") == 0)
            continue;
        if (strcmp(comp, "..") == 0) {
            if (st.n > 1)
                stack_clear(&st, st.n - 1);
            continue;
        }

        fd = openat(st.fds[st.n - 1], comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT && mkdir_mode >= 0) {
            if (mkdirat(st.fds[st.n - 1], comp, (mode_t)mkdir_mode) < 0 && errno != EEXIST)
                goto out;
            fd = openat(st.fds[st.n - 1], comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        }
        if (fd < 0) {
            if (errno == ENOENT && last && (flags & O_CREAT))
                ret = openat(st.fds[st.n - 1], comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
            goto out;
        }
        if (fstat(fd, &s) < 0) {
            close(fd);
            goto out;
        }
        if (S_ISLNK(s.st_mode)) {
            if (nvc_fs_magic(fd) == NVC_PROC_SUPER_MAGIC || ++links > NVC_MAX_SYMLINKS) {
                close(fd);
                errno = ELOOP;
                goto out;
            }
            len = readlinkat(fd, "", target, sizeof(target) - 1);
            close(fd);
            if (len < 0)
                goto out;
            target[len] = '\0';
            if (target[0] == '/')
                stack_clear(&st, 1);
            if ((spliced = splice_link(target, last ? "" : rest)) == NULL)
                goto out;
            free(work);
            work = rest = spliced;
            continue;
        }
        if (last) {
            if ((flags & O_DIRECTORY) && !S_ISDIR(s.st_mode)) {
                close(fd);
                errno = ENOTDIR;
                goto out;
            }
            if ((flags & O_PATH) && !(flags & O_CREAT)) {
                ret = fd;
                goto out;
            }
            close(fd);
            ret = openat(st.fds[st.n - 1], comp, (flags & ~O_CREAT) | O_NOFOLLOW | O_CLOEXEC);
            goto out;
        }
        if (!S_ISDIR(s.st_mode)) {
            close(fd);
            errno = ENOTDIR;
            goto out;
        }
        if (stack_push(&st, fd) < 0)
            goto out;
    }

out:
    saved = errno;
    stack_clear(&st, 0);
    free(st.fds);
    free(work);
    errno = saved;
    return ret;
}

int nvc_open_in_root(int root_fd, const char *path, int flags, mode_t mode)
{
#ifndef NVC_FORCE_WALK
    static int have_openat2 = 1;
    struct nvc_open_how how = {0};
    long fd;

    if (have_openat2) {
        how.flags = (uint64_t)(flags | O_CLOEXEC);
        how.mode = (flags & (O_CREAT | __O_TMPFILE)) ? mode : 0;
        how.resolve = NVC_RESOLVE_IN_ROOT | NVC_RESOLVE_NO_MAGICLINKS;
        /* EAGAIN: a concurrent rename raced the kernel's ".." check; trying again is safe. */
        for (int tries = 0; tries < 16; ++tries) {
            fd = syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
            if (fd >= 0 || errno != EAGAIN)
                break;
        }
        if (fd >= 0 || errno != ENOSYS)
            return (int)fd;
        have_openat2 = 0;
    }
#endif
    return walk_in_root(root_fd, path, flags, mode, -1);
}

/* Split path into a freshly allocated copy; *base points at its last component. */
static char *split_last(const char *path, char **base)
{
    char *copy, *slash;
    size_t n;

    if ((copy = strdup(path)) == NULL)
        return NULL;
    n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = '\0';
    slash = strrchr(copy, '/');
    if (slash == NULL) {
        *base = copy;
        return copy;
    }
    *slash = '\0';
    *base = slash + 1;
    return copy;
}

static bool usable_name(const char *name)
{
    return *name != '\0' && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

int nvc_mkdir_in_root(int root_fd, const char *path, mode_t mode)
{
    /* Always the walk: openat2 cannot create directories on the way. */
    return walk_in_root(root_fd, path, O_PATH | O_DIRECTORY, 0, (int)(mode & 07777));
}

int nvc_mkfile_in_root(int root_fd, const char *path, mode_t mode)
{
    char *copy, *base;
    int dir, fd, saved;

    if ((copy = split_last(path, &base)) == NULL)
        return -1;
    if (!usable_name(base)) {
        free(copy);
        errno = EINVAL;
        return -1;
    }
    dir = nvc_mkdir_in_root(root_fd, base == copy ? "/" : (*copy ? copy : "/"), 0755);
    if (dir < 0) {
        saved = errno;
        free(copy);
        errno = saved;
        return -1;
    }
    fd = nvc_open_in_root(root_fd, path, O_PATH, 0);
    if (fd < 0 && errno == ENOENT) {
        /* mknodat makes a regular file without following a dangling link in its place. */
        if (mknodat(dir, base, S_IFREG | (mode & 07777), 0) < 0 && errno != EEXIST)
            goto out;
        fd = nvc_open_in_root(root_fd, path, O_PATH, 0);
    }
out:
    saved = errno;
    close(dir);
    free(copy);
    errno = saved;
    return fd;
}

int nvc_symlink_in_root(int root_fd, const char *dir_path, const char *name, const char *target)
{
    int dir, rv = 0, saved;

    if (!usable_name(name) || strchr(name, '/') != NULL) {
        errno = EINVAL;
        return -1;
    }
    if ((dir = nvc_mkdir_in_root(root_fd, dir_path, 0755)) < 0)
        return -1;
    if (symlinkat(target, dir, name) < 0 && errno != EEXIST)
        rv = -1;
    saved = errno;
    close(dir);
    errno = saved;
    return rv;
}

static int set_attrs(int tree, uint64_t attrs)
{
    struct nvc_mount_attr attr = {0};

    if (attrs == 0)
        return 0;
    attr.attr_set = attrs;
    return (int)syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | NVC_AT_RECURSIVE, &attr,
                        sizeof(attr));
}

int nvc_clone_tree(const char *host_path, uint64_t attrs)
{
    int tree, saved;

    tree = (int)syscall(SYS_open_tree, AT_FDCWD, host_path, NVC_OPEN_TREE_CLONE | NVC_OPEN_TREE_CLOEXEC);
    if (tree < 0)
        return -1;
    if (set_attrs(tree, attrs) < 0) {
        saved = errno;
        close(tree);
        errno = saved;
        return -1;
    }
    return tree;
}

int nvc_tmpfs_tree(const char *mode, uint64_t attrs)
{
    int fs, tree, saved;

    if ((fs = (int)syscall(SYS_fsopen, "tmpfs", NVC_FSOPEN_CLOEXEC)) < 0)
        return -1;
    if (syscall(SYS_fsconfig, fs, NVC_FSCONFIG_SET_STRING, "mode", mode, 0) < 0 ||
        syscall(SYS_fsconfig, fs, NVC_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        saved = errno;
        close(fs);
        errno = saved;
        return -1;
    }
    tree = (int)syscall(SYS_fsmount, fs, NVC_FSMOUNT_CLOEXEC, (unsigned)attrs);
    saved = errno;
    close(fs);
    errno = saved;
    return tree;
}

int nvc_attach_tree(int tree_fd, int target_fd)
{
    return (int)syscall(SYS_move_mount, tree_fd, "", target_fd, "",
                        NVC_MOVE_MOUNT_F_EMPTY_PATH | NVC_MOVE_MOUNT_T_EMPTY_PATH);
}
