/* Faults of the simulated GPU host, shared by the simulated NVML and libnvidia-container.
 *
 * A fault is a file DIR/faults/<name> holding the value after '=' of its spec; counted faults
 * keep their uses in DIR/faults/<name>.count, updated under flock so that the processes of one
 * container start (shim, hook, ldconfig helpers) see one sequence.  Header-only: both libraries
 * include it after sim_topology.h, which defines SIM_DIR.
 */
#ifndef SIM_FAULTS_H
#define SIM_FAULTS_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#ifndef SIM_DIR
#error "include sim_topology.h (which defines SIM_DIR) before sim_faults.h"
#endif

#ifndef SIM_UNUSED
#define SIM_UNUSED __attribute__((unused))
#endif

/* DIR/<rel> into out; 0 when it does not fit. */
static SIM_UNUSED int sim_path(char *out, size_t len, const char *rel)
{
    int n = snprintf(out, len, "%s/%s", SIM_DIR, rel);
    return n > 0 && (size_t)n < len;
}

/* Read all of a small file into buf (NUL-terminated, trailing newlines dropped); -1 if absent. */
static SIM_UNUSED int sim_read_small(const char *path, char *buf, size_t len)
{
    int fd;
    ssize_t got;
    size_t total = 0;

    if (len == 0)
        return -1;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    while (total + 1 < len) {
        got = read(fd, buf + total, len - 1 - total);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        total += (size_t)got;
    }
    close(fd);
    buf[total] = '\0';
    while (total > 0 && (buf[total - 1] == '\n' || buf[total - 1] == '\r'))
        buf[--total] = '\0';
    return (int)total;
}

/* 1 and value copied (NUL-terminated) when DIR/faults/<name> exists, else 0. */
static SIM_UNUSED int sim_fault_get(const char *name, char *value, size_t len)
{
    char path[4096];
    char rel[512];
    char scratch[8];

    if (snprintf(rel, sizeof rel, "faults/%s", name) >= (int)sizeof rel)
        return 0;
    if (!sim_path(path, sizeof path, rel))
        return 0;
    if (value == NULL || len == 0) {
        value = scratch;
        len = sizeof scratch;
    }
    return sim_read_small(path, value, len) >= 0;
}

/* For a counted fault whose value starts with a decimal N: under flock, read+increment
   DIR/faults/<name>.count and return 1 when this use is one of the first N (the fault fires). */
static SIM_UNUSED int sim_fault_fire(const char *name)
{
    char value[1024];
    char path[4096];
    char rel[512];
    char buf[32];
    char *end;
    unsigned long limit, used = 0;
    ssize_t got;
    int fd, n, fires;

    if (!sim_fault_get(name, value, sizeof value))
        return 0;
    errno = 0;
    limit = strtoul(value, &end, 10);
    if (end == value || errno != 0)
        return 0;
    if (snprintf(rel, sizeof rel, "faults/%s.count", name) >= (int)sizeof rel)
        return 0;
    if (!sim_path(path, sizeof path, rel))
        return 0;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return 0;
    while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
        ;
    got = pread(fd, buf, sizeof buf - 1, 0);
    if (got > 0) {
        buf[got] = '\0';
        used = strtoul(buf, NULL, 10);
    }
    fires = used < limit;
    n = snprintf(buf, sizeof buf, "%lu\n", used + 1);
    if (ftruncate(fd, 0) == 0 && n > 0) {
        if (pwrite(fd, buf, (size_t)n, 0) < 0) {
            /* A lost count only shortens the fault; the caller still gets this use's answer. */
        }
    }
    flock(fd, LOCK_UN);
    close(fd);
    return fires;
}

#endif /* SIM_FAULTS_H */
