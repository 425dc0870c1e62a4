/*
 * Timers and file descriptor watches of module requests (celeris_timer_* and
 * celeris_watch_* of celeris/module.h) on the request's worker loop. Each one
 * belongs to one request and ends with it; their memory is the request's
 * arena, so nothing is allocated or freed by hand.
 *
 * handler_module.c owns the request: it hands this file the request's
 * exchange (cel_module_req_wait) and calls cel_module_events_close from the
 * request's on_close, after the module's own on_close function.
 */
#ifndef CEL_MODULE_LOOP_H
#define CEL_MODULE_LOOP_H

#include "celeris/module.h"
#include "exchange.h"

typedef struct cel_mod_events cel_mod_events;

/* Stops every timer and watch of the request (SET may be NULL: none). A
 * callback running meanwhile returns without touching the request again. */
void cel_module_events_close(cel_mod_events *set);
/* Timers and watches that can still call back (SET may be NULL). */
unsigned cel_module_events_armed(const cel_mod_events *set);

/* In handler_module.c, for this file: takes REQ's exchange over (so on_close
 * runs), marks a request that has no answer yet as waiting, and points *SET
 * at the request's slot for its events. NULL when the request is over. */
cel_exchange *cel_module_req_wait(celeris_req *req, cel_mod_events ***set);
/* After a timer or watch function returned: a request left unanswered with
 * nothing to wait for is ended with a 500 (logged). */
void cel_module_req_settle(celeris_req *req);

#endif
