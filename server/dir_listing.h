/*
 * The dir handler's listing of a directory (`listing: true`): an HTML page
 * naming its entries in byte order, dot files left out, subdirectories with
 * a trailing '/'; names are percent-encoded in links and HTML-escaped in
 * text, so no name can inject markup.
 */
#ifndef CEL_DIR_LISTING_H
#define CEL_DIR_LISTING_H

#include "handler.h"

/* Fills RES with the listing of directory DIR (a descriptor the caller keeps;
 * it is reopened, so its position does not matter), the page in X's arena.
 * 0 (403 in RES when it cannot be read), or CEL_ENOMEM. */
int cel_dir_listing(cel_exchange *x, cel_response *res, int dir);

#endif
