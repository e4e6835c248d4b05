/* Files embedded in the library at build time (tools/embed_files.py): the kernel sources and
   the built-in tuning table. */
#ifndef CLATTN_EMBEDDED_H
#define CLATTN_EMBEDDED_H

#include <stddef.h>
#include <string.h>

/* One file; a table of them ends with name NULL. */
typedef struct clattn_embedded_file {
    const char *name;
    const char *text;    /* NUL-terminated */
    size_t      length;  /* without the NUL */
} clattn_embedded_file;

/* The kernel sources: the .cl files of cl/ and the headers they include (cl/meson.build). */
extern const clattn_embedded_file clattn_embedded_kernels[];
/* builtin_tuning.txt (src/meson.build). */
extern const clattn_embedded_file clattn_embedded_tuning[];

/* The file called name in table, or NULL. */
static inline const clattn_embedded_file *clattn_embedded_find(const clattn_embedded_file *table,
                                                               const char *name)
{
    for (; table->name; table++)
        if (strcmp(table->name, name) == 0)
            return table;
    return NULL;
}

#endif
