#include "drain.h"

#include <stdatomic.h>

static atomic_int draining;

int cel_drain_start(void)
{
    return atomic_exchange_explicit(&draining, 1, memory_order_relaxed);
}

int cel_draining(void)
{
    return atomic_load_explicit(&draining, memory_order_relaxed);
}
