/*
 * Loading handler modules (.so files): one image per file version, shared by
 * every route and generation that uses it, unloaded with its last user.
 *
 * Every load, the first included, runs from a private copy of the file (a
 * memfd), so a file rewritten in place (cp over it) never changes loaded code,
 * and a file that changed on disk since an image of it was loaded is loaded
 * anew under a name the dynamic loader has not seen: a reload runs the new
 * code while requests on the old generation finish on the old one.
 */
#ifndef CEL_MODULE_H
#define CEL_MODULE_H

#include <stddef.h>

#include "celeris/module.h"

typedef struct cel_module_image cel_module_image;

/* Whether descriptor D (its `size`) has FIELD: fields added since ABI 1
 * began are absent from modules built before them. */
#define CEL_MODULE_HAS(d, field) ((d)->size >= offsetof(celeris_module, field) + sizeof((d)->field))

/* Loads PATH and checks its descriptor (symbol, ABI version, handle or a
 * middleware function: which one its use needs is the caller's check) and,
 * before loading it, that the daemon has every celeris_* function it calls.
 * ROUTE only names the route in errors. Main thread. 0, or CEL_EINVAL with a
 * message in ERR. */
int cel_module_load(const char *path, const char *route, cel_module_image **out, char *err,
                    size_t errlen);
const celeris_module *cel_module_desc(const cel_module_image *m);
/* The descriptor's name, else the name given to CELERIS_MODULE, else NULL. */
const char *cel_module_name(const cel_module_image *m);
const char *cel_module_path(const cel_module_image *m);
/* Drops a reference; the last one unloads the image. Any thread. */
void cel_module_unref(cel_module_image *m);

#endif
