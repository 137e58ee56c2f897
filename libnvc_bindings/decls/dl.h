/* The dynamic loader, reached through the running process (ffi.dlopen(None)). The loader
   calls it directly so that a failed candidate yields dlerror()'s own reason, that the file
   actually loaded can be named (dladdr), and that no lookup ever falls back to
   ctypes.util.find_library (which runs host tools). Dl_info is glibc's layout. */
typedef struct {
    const char *dli_fname;
    void *dli_fbase;
    const char *dli_sname;
    void *dli_saddr;
} Dl_info;

void *dlopen(const char *, int);
void *dlsym(void *, const char *);
int dladdr(const void *, Dl_info *);
int dlclose(void *);
char *dlerror(void);
