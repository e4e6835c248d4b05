/* clattn-bench --list-devices (devices.h). The list and the default come from the library's own
   selector (clattn_list_devices), the properties from its probe (clattn_probe_device), so what
   is printed is what a context on that device would see. */
#include "devices.h"

#include <stdio.h>
#include <stdlib.h>

#include "probe.h"
#include "tools.h"

static const char *class_name(clattn_device_class c)
{
    return c == CLATTN_DEVICE_CLASS_CPU ? "cpu" : c == CLATTN_DEVICE_CLASS_GPU ? "gpu" : "other";
}

/* One device: its selector and name on the first line, its probe on the second. */
static int print_device(const clattn_listed_device *e, int is_default)
{
    printf("--device %u:%u%s  %s\n", e->platform_index, e->device_index,
           is_default ? " (the default)" : "", e->description);
    clattn_device_probe p;
    clattn_status st = clattn_probe_device(e->device, &p);
    if (st != CLATTN_SUCCESS) {
        fprintf(stderr, "clattn-bench: probing %u:%u failed: %s\n", e->platform_index,
                e->device_index, clattn_last_error());
        return 0;
    }
    char driver[256];
    if (clGetDeviceInfo(e->device, CL_DRIVER_VERSION, sizeof driver, driver, NULL) != CL_SUCCESS)
        snprintf(driver, sizeof driver, "?");
    printf("    class %s, %u compute units, local memory %llu KiB (%s), float vector width %u, "
           "fp16 %s, subgroups %s, driver %s\n",
           class_name(p.device_class), p.compute_units,
           (unsigned long long)(p.local_mem_size / 1024),
           p.local_mem_dedicated ? "dedicated" : "in global memory",
           p.preferred_vector_width_float, p.has_fp16 ? "yes" : "no",
           p.has_subgroups ? "yes" : "no", driver);
    return 1;
}

int print_devices(void)
{
    clattn_listed_device *items = NULL;
    size_t count = 0, default_index = 0;
    clattn_status st = clattn_list_devices(&items, &count, &default_index);
    if (st != CLATTN_SUCCESS) {
        fprintf(stderr, "clattn-bench: %s: %s\n", clattn_status_string(st), clattn_last_error());
        return 1;
    }
    int ok = 1;
    for (size_t i = 0; i < count; i++)
        ok = print_device(&items[i], i == default_index) && ok;
    if (count == 0)
        printf("no OpenCL device\n");
    printf("A --device value may also be gpu, cpu, or part of a name (case-insensitive): the "
           "first device\nwhose \"vendor / platform / device\" contains it. Without --device: "
           "$CLATTN_DEVICE,\nelse the first GPU, accelerator or CPU.\n");
    free(items);
    return ok ? 0 : 1;
}
