/* Fixture for tests/check_includes.py --expect-cycle (see p.h). */
#include "q.h"

int p_answer(void)
{
    return 42;
}

int q_answer(void)
{
    return p_answer();
}
