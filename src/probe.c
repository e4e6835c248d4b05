/* Device probe: one clGetDeviceInfo per limit the planner uses. */
#include "probe.h"

#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "status.h"

static clattn_status query(cl_device_id device, cl_device_info what, size_t size, void *value)
{
    cl_int err = clGetDeviceInfo(device, what, size, value, NULL);
    return err == CL_SUCCESS ? CLATTN_SUCCESS : clattn_fail_cl(err, "clGetDeviceInfo");
}

/* Warp or wavefront size by vendor, for devices that do not say it before a kernel exists. */
static size_t guess_work_group_multiple(cl_uint vendor_id, clattn_device_class device_class)
{
    if (device_class == CLATTN_DEVICE_CLASS_CPU)
        return 8;
    switch (vendor_id) {
    case 0x10de: return 32;  /* NVIDIA warp */
    case 0x1002: return 64;  /* AMD wavefront (GCN/CDNA; RDNA runs wave64 too) */
    case 0x8086: return 16;  /* Intel SIMD16 */
    default: return 32;
    }
}

/* 1 if the space-separated extension list names name exactly. */
static int has_extension(const char *extensions, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = strstr(extensions, name); p; p = strstr(p + 1, name))
        if ((p == extensions || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\0'))
            return 1;
    return 0;
}

static clattn_status read_extensions(clattn_device_probe *probe, cl_device_id device)
{
    size_t size = 0;
    cl_int err = clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &size);
    if (err != CL_SUCCESS)
        return clattn_fail_cl(err, "clGetDeviceInfo(CL_DEVICE_EXTENSIONS)");
    char *extensions = clattn_calloc(size + 1, 1);
    if (!extensions)
        return clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "no host memory for %zu bytes", size);
    clattn_status s = query(device, CL_DEVICE_EXTENSIONS, size, extensions);
    probe->has_fp16 = has_extension(extensions, "cl_khr_fp16");
    probe->has_subgroups = has_extension(extensions, "cl_khr_subgroups") ||
                           has_extension(extensions, "cl_intel_subgroups");
    free(extensions);
    return s;
}

clattn_status clattn_probe_device(cl_device_id device, clattn_device_probe *probe)
{
    memset(probe, 0, sizeof *probe);
    cl_device_type type = 0;
    cl_device_local_mem_type local_type = CL_LOCAL;
    size_t item_sizes[3] = {0, 0, 0};
    clattn_status s = CLATTN_SUCCESS;

    if ((s = query(device, CL_DEVICE_TYPE, sizeof type, &type)) ||
        (s = query(device, CL_DEVICE_VENDOR_ID, sizeof probe->vendor_id, &probe->vendor_id)) ||
        (s = query(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof probe->compute_units,
                   &probe->compute_units)) ||
        (s = query(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof probe->max_work_group_size,
                   &probe->max_work_group_size)) ||
        (s = query(device, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof item_sizes, item_sizes)) ||
        (s = query(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof probe->local_mem_size,
                   &probe->local_mem_size)) ||
        (s = query(device, CL_DEVICE_LOCAL_MEM_TYPE, sizeof local_type, &local_type)) ||
        (s = query(device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT,
                   sizeof probe->preferred_vector_width_float,
                   &probe->preferred_vector_width_float)) ||
        (s = query(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof probe->max_mem_alloc_size,
                   &probe->max_mem_alloc_size)) ||
        (s = query(device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof probe->global_mem_size,
                   &probe->global_mem_size)) ||
        (s = query(device, CL_DEVICE_NAME, sizeof probe->device_name, probe->device_name)) ||
        (s = read_extensions(probe, device)))
        return s;

    /* A device that says it is both (simulators such as oclgrind) is planned as a GPU. */
    probe->device_class = (type & CL_DEVICE_TYPE_GPU)   ? CLATTN_DEVICE_CLASS_GPU
                          : (type & CL_DEVICE_TYPE_CPU) ? CLATTN_DEVICE_CLASS_CPU
                                                        : CLATTN_DEVICE_CLASS_OTHER;
    probe->max_work_item_size0 = item_sizes[0];
    probe->local_mem_dedicated = local_type == CL_LOCAL;
    probe->work_group_multiple = guess_work_group_multiple(probe->vendor_id, probe->device_class);
    return CLATTN_SUCCESS;
}
