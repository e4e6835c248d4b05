/* Device probe: the limits and capabilities that tiling depends on, read once per context. */
#ifndef CLATTN_PROBE_H
#define CLATTN_PROBE_H

#include "clattn.h"

typedef enum clattn_device_class {
    CLATTN_DEVICE_CLASS_CPU = 0,   /* host memory, implicit vectorisation over work-items */
    CLATTN_DEVICE_CLASS_GPU,       /* dedicated local memory, SIMT */
    CLATTN_DEVICE_CLASS_OTHER      /* accelerators and anything else: treated like a GPU */
} clattn_device_class;

typedef struct clattn_device_probe {
    clattn_device_class device_class;
    cl_uint  vendor_id;
    cl_uint  compute_units;
    size_t   max_work_group_size;
    size_t   max_work_item_size0;         /* CL_DEVICE_MAX_WORK_ITEM_SIZES[0] */
    cl_ulong local_mem_size;              /* bytes */
    int      local_mem_dedicated;         /* CL_LOCAL (1) or CL_GLOBAL (0) */
    cl_uint  preferred_vector_width_float;
    size_t   work_group_multiple;         /* warp/wavefront size or the best guess for it */
    cl_ulong max_mem_alloc_size;
    cl_ulong global_mem_size;
    int      has_fp16;                    /* cl_khr_fp16 */
    int      has_subgroups;               /* cl_khr_subgroups or cl_intel_subgroups */
    char     device_name[256];
} clattn_device_probe;

/* Fill *probe from device. Returns CLATTN_ERROR_OPENCL if a query fails. */
clattn_status clattn_probe_device(cl_device_id device, clattn_device_probe *probe);

#endif
