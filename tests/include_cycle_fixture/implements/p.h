/* Fixture for tests/check_includes.py --expect-cycle: no header includes
 * another in a circle, but q.c defines p_answer, which p.h declares, so q.c
 * belongs to unit p too: p -> q (q.c includes q.h) -> p (q.h includes p.h).
 * The shape config.c and conf.h had when config.c held conf.h's helpers. */
#ifndef FIXTURE_P_H
#define FIXTURE_P_H
int p_answer(void);
#endif
