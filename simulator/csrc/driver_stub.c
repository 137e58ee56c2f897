/* A stand-in for one library of the NVIDIA driver: a real shared object with the driver's
 * SONAME (set at link time) so that ldconfig, libnvidia-container and the dynamic loader treat
 * it like the real file.  It only says which simulated driver it belongs to. */
#include "driver_stub_version.h"

__attribute__((visibility("default"))) const char sim_driver_version[] = SIM_STUB_DRIVER_VERSION;

__attribute__((visibility("default"))) const char *sim_driver_stub_version(void)
{
    return sim_driver_version;
}
