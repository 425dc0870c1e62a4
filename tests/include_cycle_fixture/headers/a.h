/* Fixture for tests/check_includes.py --expect-cycle: a.h and b.h include
 * each other, the smallest cycle the check must refuse. */
#ifndef FIXTURE_A_H
#define FIXTURE_A_H
#include "b.h"
#endif
