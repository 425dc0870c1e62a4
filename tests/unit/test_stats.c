#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "stats.h"

/* The id a slot holds, as the scrape would copy it. */
static size_t slot_id(const cel_exemplar *e, char *out)
{
    size_t n = atomic_load(&e->len);
    for (size_t i = 0; i < (n + 7) / 8; i++) {
        uint64_t w = atomic_load(&e->id[i]);
        memcpy(out + 8 * i, &w, 8);
    }
    out[n] = 0;
    return n;
}

/* A bucket takes an id, keeps it for a millisecond, then takes
 * the next one; other buckets are their own. */
static void test_exemplar_kept_a_millisecond(void **state)
{
    (void)state;
    cel_wstats *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    char got[CEL_STATS_EXEMPLAR_ID + 8];
    const uint64_t t0 = 1796322905000000u;
    const cel_exemplar *e = &w->exemplars[3][0];

    cel_stats_exemplar(w, 3, 0, "first-id-of-twenty-one", 22, 7, t0);
    assert_int_equal(slot_id(e, got), 22);
    assert_string_equal(got, "first-id-of-twenty-one");
    assert_int_equal(atomic_load(&e->us), 7);
    assert_int_equal(atomic_load(&e->seq) % 2, 0);

    cel_stats_exemplar(w, 3, 0, "second", 6, 9, t0 + 999);
    assert_int_equal(slot_id(e, got), 22);
    assert_string_equal(got, "first-id-of-twenty-one");

    cel_stats_exemplar(w, 3, 1, "other-bucket", 12, 200, t0 + 1);
    assert_int_equal(slot_id(&w->exemplars[3][1], got), 12);
    assert_string_equal(got, "other-bucket");

    cel_stats_exemplar(w, 3, 0, "third", 5, 11, t0 + 1000);
    assert_int_equal(slot_id(e, got), 5);
    assert_string_equal(got, "third");
    assert_int_equal(atomic_load(&e->us), 11);

    /* a wall clock set back does not freeze the slot */
    cel_stats_exemplar(w, 3, 0, "after-a-step-back", 17, 1, t0 - 5000000u);
    assert_int_equal(slot_id(e, got), 17);
    assert_string_equal(got, "after-a-step-back");

    /* too long for OpenMetrics: not kept, and the slot's time stays */
    char longid[CEL_STATS_EXEMPLAR_ID + 2];
    memset(longid, 'L', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = 0;
    cel_stats_exemplar(w, 3, 0, longid, CEL_STATS_EXEMPLAR_ID + 1, 1, t0 + 10000000u);
    assert_string_equal((slot_id(e, got), got), "after-a-step-back");
    free(w);
}

int main(void)
{
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exemplar_kept_a_millisecond),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
