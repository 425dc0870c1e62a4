/* Fixture for tests/check_includes.py --expect-cycle (see x.h). */
#ifndef FIXTURE_Y_H
#define FIXTURE_Y_H
#include "x.h"
int y_answer(void);
#endif
