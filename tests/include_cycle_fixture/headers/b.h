/* Fixture for tests/check_includes.py --expect-cycle (see a.h). */
#ifndef FIXTURE_B_H
#define FIXTURE_B_H
#include "a.h"
#endif
