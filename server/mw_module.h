/* The `module` middleware kind (mw_module.c), built by config. */
#ifndef CEL_MW_MODULE_H
#define CEL_MW_MODULE_H

#include <stddef.h>

#include "middleware.h"

struct cel_module_image;

/* The `module` middleware for IMG (see cel_module_mw_instance_new); NULL
 * with ERR, also when the module has neither on_request nor
 * on_response_head. */
cel_mw *cel_mw_module_new(struct cel_module_image *img, const char *route, const char *config_json,
                          unsigned nworkers, char *err, size_t errlen);

#endif
