/* Filesystem primitives that never leave a container root, and fd-based mounting.
 *
 * Every path inside a container rootfs is resolved INSIDE it: symlinks are followed as if the
 * rootfs were "/", ".." stops at the rootfs, and magic links (/proc/<pid>/fd/..., .../root) are
 * refused. openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) does that in the kernel; where it is
 * missing (before Linux 5.6), a component walk with O_PATH | O_NOFOLLOW does the same in user
 * space. Mount targets are only ever created through these functions, and mounts are attached
 * to an O_PATH fd of the target (move_mount), never to a path the kernel would resolve again.
 */
#ifndef HEADER_NVC_FS_H
#define HEADER_NVC_FS_H

#include <stdint.h>
#include <sys/types.h>

/* MOUNT_ATTR_* of <linux/mount.h>, which clashes with glibc's <sys/mount.h> on some releases. */
#define NVC_MNT_RDONLY 0x00000001ULL
#define NVC_MNT_NOSUID 0x00000002ULL
#define NVC_MNT_NODEV 0x00000004ULL
#define NVC_MNT_NOEXEC 0x00000008ULL

/* Open path (absolute or relative; either way taken from root_fd) without leaving root_fd.
   flags are open(2) flags (O_CLOEXEC is always added). Returns an fd or -1 with errno set. */
int nvc_open_in_root(int root_fd, const char *path, int flags, mode_t mode);

/* The directory at path inside root, made (with mode) where missing; an O_PATH fd or -1. */
int nvc_mkdir_in_root(int root_fd, const char *path, mode_t mode);

/* The file at path inside root, made empty (with mode) where missing; an O_PATH fd or -1. */
int nvc_mkfile_in_root(int root_fd, const char *path, mode_t mode);

/* Create dir/name -> target inside root (an existing entry is kept); 0 or -1. */
int nvc_symlink_in_root(int root_fd, const char *dir, const char *name, const char *target);

/* A detached bind-mount clone of a host path with the given NVC_MNT_* attributes set. */
int nvc_clone_tree(const char *host_path, uint64_t attrs);

/* A detached fresh tmpfs (mode as in the mount option, e.g. "0755"). */
int nvc_tmpfs_tree(const char *mode, uint64_t attrs);

/* Attach a detached tree (from the two above) onto the object target_fd refers to. */
int nvc_attach_tree(int tree_fd, int target_fd);

/* Filesystem magic of an fd (statfs f_type), or 0. */
long nvc_fs_magic(int fd);

#endif /* HEADER_NVC_FS_H */
