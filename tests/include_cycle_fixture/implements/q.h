/* Fixture for tests/check_includes.py --expect-cycle (see p.h). */
#ifndef FIXTURE_Q_H
#define FIXTURE_Q_H
#include "p.h"
int q_answer(void);
#endif
