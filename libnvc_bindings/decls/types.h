/* x86-64 glibc widths of the POSIX types nvc.h takes from <sys/types.h>; cffi's ABI mode
   has no system headers, so they are spelled out here. */
typedef int32_t pid_t;
typedef uint32_t uid_t;
typedef uint32_t gid_t;
typedef uint64_t dev_t;

/* Opaque handles: only ever used through pointers. */
struct nvc_context;
struct nvc_container;
struct nvc_device;
