/*
 * Timers and file descriptor watches of module requests (celeris_timer_* and
 * celeris_watch_* of celeris/module.h) on the request's worker loop. Each one
 * belongs to one request and ends with it; their memory is the request's
 * arena, so nothing is allocated or freed by hand.
 *
 * handler_module.c owns the request: it starts them here with what they
 * need of it, and calls cel_module_events_close from the request's on_close,
 * after the module's own on_close function.
 */
#ifndef CEL_MODULE_LOOP_H
#define CEL_MODULE_LOOP_H

#include "celeris/module.h"
#include "arena.h"

typedef struct cel_mod_events cel_mod_events;
struct cel_env;

/* A request's timers and watches, their memory in ARENA (the request's), on
 * ENV's loop. SETTLE(REQ) runs after each of their functions returns with the
 * request still alive. NULL on ENOMEM. */
cel_mod_events *cel_module_events_new(cel_arena *arena, struct cel_env *env,
                                      void (*settle)(celeris_req *req));
/* celeris_timer_start and celeris_watch_start on SET (REQ's). */
int cel_module_timer_start(cel_mod_events *set, celeris_req *req, uint64_t ms, unsigned flags,
                           void (*fn)(celeris_req *req, void *arg), void *arg, celeris_timer **out);
int cel_module_watch_start(cel_mod_events *set, celeris_req *req, int fd, unsigned events,
                           void (*fn)(celeris_req *req, int fd, unsigned events, void *arg),
                           void *arg, celeris_watch **out);
/* Stops every timer and watch of the request (SET may be NULL: none). A
 * function running meanwhile returns without the request being touched again. */
void cel_module_events_close(cel_mod_events *set);
/* Timers and watches that can still call back (SET may be NULL). */
unsigned cel_module_events_armed(const cel_mod_events *set);

#endif
