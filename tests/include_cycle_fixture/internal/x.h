/* Fixture for tests/check_includes.py --expect-cycle: x_internal.h is x's
 * private header, so it counts as part of unit x, and what it includes is
 * what x includes: x -> y (x_internal.h includes y.h) -> x (y.h includes x.h).
 * A private header joins its unit; it does not hide a cycle through it. */
#ifndef FIXTURE_X_H
#define FIXTURE_X_H
int x_answer(void);
#endif
