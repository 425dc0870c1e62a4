/* Fixture for tests/check_includes.py --expect-cycle (see x.h). */
#include "x.h"

#include "x_internal.h"

int x_helper(void)
{
    return 42;
}

int x_answer(void)
{
    return x_helper();
}
