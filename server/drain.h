/*
 * Draining: the process-wide "stop sending me new work" flag a load balancer
 * reads through the `status` and `readiness` routes (503 while set), while
 * every other route keeps serving. Set by SIGUSR2 (`celerisd drain`) and, for
 * `drain_time`, by SIGTERM before the GOAWAY; never cleared (a drained daemon
 * is on its way out: restart it to make it ready again). One atomic load to
 * read, from any thread.
 */
#ifndef CEL_DRAIN_H
#define CEL_DRAIN_H

/* Sets the flag. Returns 1 when it was already set. */
int cel_drain_start(void);
int cel_draining(void);

#endif
