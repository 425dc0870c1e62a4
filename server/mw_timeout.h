/*
 * The timeout middleware (mw_timeout.c). Its own header: the front ends call
 * cel_mw_timeout_cancel, and middleware.h stays the kinds' interface.
 */
#ifndef CEL_MW_TIMEOUT_H
#define CEL_MW_TIMEOUT_H

#include "middleware.h"

/* `timeout`: a request not answered MS milliseconds after its request phase
 * gets a 504; one whose streamed answer has not ended by then is cut (HTTP/2
 * RST_STREAM, HTTP/1.1 the connection closed). Either way the front end
 * closes the exchange and the handler's on_close runs. Per worker one list
 * and one timer on the worker's loop, no lock. */
cel_mw *cel_mw_timeout_new(uint32_t ms);

/* The front end is done with X while X->timer is set: X leaves its list. */
void cel_mw_timeout_cancel(cel_exchange *x);

#endif
