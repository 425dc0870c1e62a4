/* Fixture for tests/check_includes.py --expect-cycle (see x.h). */
#ifndef FIXTURE_X_INTERNAL_H
#define FIXTURE_X_INTERNAL_H
#include "y.h"
int x_helper(void);
#endif
