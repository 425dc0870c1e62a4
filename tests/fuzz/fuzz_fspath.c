/*
 * fuzz_fspath: cel_fspath_map, the request path to a path under a dir root.
 *
 * The input is a raw (percent-encoded) path. Checked, whenever it maps:
 *   - the result is a relative path: no leading '/', no empty, "." or ".."
 *     segment, no NUL or backslash, and its length is what was returned;
 *   - it never needs more room than the input (decoding only shrinks);
 *   - it is a fixed point: the result, with each '%' written "%25", maps to
 *     itself (decoded once, never twice);
 *   - a smaller buffer gives the same result or CEL_ETOOBIG, never another
 *     path.
 * And: an input holding "%00", "%5c", a backslash or a ".." segment that
 * survives decoding is refused (the second decoder below says which do); an
 * input cel_fspath_plain passes maps to itself.
 */
#include "common.h"
#include "fspath.h"
#include "fuzz.h"

static void check_shape(const char *out, size_t len)
{
    FUZZ_CHECK(strlen(out) == len, "length %zu but strlen %zu", len, strlen(out));
    FUZZ_CHECK(len == 0 || (out[0] != '/' && out[len - 1] != '/'), "leading or trailing '/'");
    for (size_t i = 0, seg = 0; i <= len; i++) {
        if (i < len && out[i] != '/') {
            FUZZ_CHECK(out[i] != '\\', "backslash at %zu", i);
            continue;
        }
        size_t k = i - seg;
        FUZZ_CHECK(len == 0 || k > 0, "empty segment at %zu", seg);
        FUZZ_CHECK(!(k == 1 && out[seg] == '.'), "\".\" segment at %zu", seg);
        FUZZ_CHECK(!(k == 2 && out[seg] == '.' && out[seg + 1] == '.'), "\"..\" segment at %zu",
                   seg);
        seg = i + 1;
    }
}

/* Decodes once on its own, splits at '/': does the input hold something the
 * mapping must refuse? -1: a malformed escape (refused too). */
static int must_refuse(const uint8_t *d, size_t n)
{
    size_t seglen = 0;
    int dots = 0;
    for (size_t i = 0; i <= n; i++) {
        int c;
        if (i == n) {
            c = '/';
        } else if (d[i] == '%') {
            if (i + 2 >= n)
                return -1;
            char h[3] = {(char)d[i + 1], (char)d[i + 2], 0};
            char *end;
            if (!((h[0] >= '0' && h[0] <= '9') || ((h[0] | 0x20) >= 'a' && (h[0] | 0x20) <= 'f')) ||
                !((h[1] >= '0' && h[1] <= '9') || ((h[1] | 0x20) >= 'a' && (h[1] | 0x20) <= 'f')))
                return -1;
            c = (int)strtol(h, &end, 16);
            i += 2;
        } else {
            c = d[i];
        }
        if (c == 0 || c == '\\')
            return 1;
        if (c == '/') {
            if (seglen == 2 && dots == 2)
                return 1;
            seglen = 0;
            dots = 0;
        } else {
            seglen++;
            dots += c == '.';
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_dup(data, size, 0);
    char out[CEL_FSPATH_MAX + 1];
    size_t len = 0;
    int rc = cel_fspath_map(in, size, out, sizeof(out), &len, NULL);
    int refuse = must_refuse(data, size);
    FUZZ_CHECK(rc == 0 || rc == CEL_EINVAL || rc == CEL_ETOOBIG, "rc %d", rc);
    FUZZ_CHECK(refuse == 0 || rc == CEL_EINVAL || rc == CEL_ETOOBIG, "input to refuse gave %d", rc);
    FUZZ_CHECK(refuse != 0 || rc != CEL_EINVAL, "refused an acceptable input");
    if (cel_fspath_plain(in, size))
        FUZZ_CHECK(size <= CEL_FSPATH_MAX ? rc == 0 && len == size && memcmp(out, in, size) == 0
                                          : rc == CEL_ETOOBIG,
                   "a plain input maps to something else (%d)", rc);
    if (rc == 0) {
        check_shape(out, len);
        FUZZ_CHECK(len <= size, "result %zu longer than the input %zu", len, size);
        char again[3 * (CEL_FSPATH_MAX + 1)], out2[CEL_FSPATH_MAX + 1];
        size_t k = 0, len2 = 0;
        for (size_t i = 0; i < len; i++) {
            if (out[i] == '%') {
                memcpy(again + k, "%25", 3);
                k += 3;
            } else {
                again[k++] = out[i];
            }
        }
        int rc2 = cel_fspath_map(again, k, out2, sizeof(out2), &len2, NULL);
        FUZZ_CHECK(rc2 == 0 && len2 == len && memcmp(out, out2, len) == 0, "not a fixed point (%d)",
                   rc2);
        for (size_t cap = 1; cap <= len + 1; cap++) {
            char small[CEL_FSPATH_MAX + 1];
            size_t l3 = 0;
            int rc3 = cel_fspath_map(in, size, small, cap, &l3, NULL);
            FUZZ_CHECK(rc3 == CEL_ETOOBIG || (rc3 == 0 && l3 == len && !memcmp(small, out, len)),
                       "capacity %zu gives %d", cap, rc3);
            FUZZ_CHECK(cap <= len || rc3 == 0, "capacity %zu is enough but gives %d", cap, rc3);
        }
    }
    free(in);
    return 0;
}
