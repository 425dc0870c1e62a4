/*
 * fuzz_template: cel_tmpl_compile and cel_tmpl_render.
 *
 * The input is JSON text, a NUL byte, then the request as NUL-separated fields:
 *   METHOD \0 RAWPATH \0 PARAMSPEC \0 NAME1 \0 VALUE1 \0 NAME2 \0 VALUE2 ...
 * RAWPATH is split at its first '?' into path and query, as h2_intake.c does. Each
 * {{param.NAME}} the template names (up to CEL_MAX_PARAMS) becomes a param whose
 * offset and length into the path come from two bytes of PARAMSPEC; its first
 * byte also picks the size of the first render buffer. Headers are up to 16
 * name/value pairs. Every field is copied into a heap block of its exact size,
 * so reading past one is an ASan report, not a read of the next field.
 *
 * Checked, abort() otherwise:
 *   - a render into an empty buffer answers CEL_ETOOBIG with a bound B > 0;
 *   - a render into exactly B bytes succeeds (B is "certain to be enough");
 *   - any render succeeds into any buffer of at least B bytes and then produces
 *     the same bytes; one that fails answers CEL_ETOOBIG with the same B;
 *   - the output parses as JSON (jansson), whatever the request holds;
 *   - a template without placeholders renders to cel_tmpl_constant's text, and
 *     that parses to a value equal to the input.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "json_template.h"

#define MAX_FIELDS (3 + 2 * 16)

typedef struct names {
    char *name[CEL_MAX_PARAMS];
    unsigned n;
} names;

static void collect_param(void *arg, const char *name, size_t len)
{
    names *nm = arg;
    for (unsigned i = 0; i < nm->n; i++)
        if (strlen(nm->name[i]) == len && memcmp(nm->name[i], name, len) == 0)
            return;
    if (nm->n < CEL_MAX_PARAMS)
        nm->name[nm->n++] = fuzz_dup(name, len, 1);
}

static cel_str field(char **fields, size_t *lens, size_t nf, size_t i)
{
    if (i >= nf)
        return (cel_str){"", 0};
    return (cel_str){fields[i], lens[i]};
}

/* Renders into a heap buffer of exactly CAP bytes; returns it (or NULL on
 * CEL_ETOOBIG) with *RC and *LEN set. */
static char *render(const cel_tmpl *t, const cel_request *req, size_t cap, int *rc, size_t *len)
{
    char *buf = malloc(cap ? cap : 1);
    if (!buf)
        abort();
    *len = (size_t)-1;
    *rc = cel_tmpl_render(t, req, buf, cap, len);
    FUZZ_CHECK(*rc == 0 || *rc == CEL_ETOOBIG, "render returned %d", *rc);
    if (*rc == 0)
        FUZZ_CHECK(*len <= cap, "render wrote %zu bytes into %zu", *len, cap);
    if (*rc) {
        free(buf);
        return NULL;
    }
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nul = memchr(s, '\0', size);
    size_t jlen = nul ? (size_t)(nul - s) : size;

    json_error_t je;
    json_t *root = json_loadb(s, jlen, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!root)
        return 0;
    char err[128];
    cel_tmpl *t = cel_tmpl_compile(root, err, sizeof(err));
    if (!t) {
        json_decref(root);
        return 0;
    }

    /* the request fields */
    char *fields[MAX_FIELDS];
    size_t lens[MAX_FIELDS], nf = 0;
    if (nul) {
        const char *p = nul + 1, *end = s + size;
        while (nf < MAX_FIELDS) {
            const char *z = memchr(p, '\0', (size_t)(end - p));
            size_t n = z ? (size_t)(z - p) : (size_t)(end - p);
            fields[nf] = fuzz_dup(p, n, 0);
            lens[nf++] = n;
            if (!z)
                break;
            p = z + 1;
        }
    }

    cel_request req;
    memset(&req, 0, sizeof(req));
    req.method = field(fields, lens, nf, 0);
    req.method_bit = cel_method_bit(req.method.p, req.method.n);
    cel_str raw = field(fields, lens, nf, 1);
    const char *q = memchr(raw.p, '?', raw.n);
    if (q) {
        req.path = (cel_str){raw.p, (size_t)(q - raw.p)};
        req.query = (cel_str){q + 1, raw.n - req.path.n - 1};
    } else {
        req.path = raw;
        req.query = (cel_str){raw.p + raw.n, 0};
    }
    cel_str spec = field(fields, lens, nf, 2);

    names nm = {.n = 0};
    cel_tmpl_each_param(t, collect_param, &nm);
    cel_param params[CEL_MAX_PARAMS];
    for (unsigned i = 0; i < nm.n; i++) {
        size_t plen = req.path.n;
        unsigned char a = spec.n > 1 + 2 * i ? (unsigned char)spec.p[1 + 2 * i] : 0;
        unsigned char b = spec.n > 2 + 2 * i ? (unsigned char)spec.p[2 + 2 * i] : 0xff;
        size_t off = plen ? a % (plen + 1) : 0;
        size_t len = (plen - off) ? b % (plen - off + 1) : 0;
        params[i] = (cel_param){nm.name[i], (uint32_t)off, (uint32_t)len};
    }
    req.params = params;
    req.nparams = nm.n;

    cel_header hdrs[16];
    size_t nh = 0;
    for (size_t i = 3; i + 1 < nf && nh < 16; i += 2)
        hdrs[nh++] = (cel_header){{fields[i], lens[i]}, {fields[i + 1], lens[i + 1]}};
    req.headers = hdrs;
    req.nheaders = nh;

    /* the bound, from an empty buffer */
    int rc;
    size_t bound, len;
    char *none = render(t, &req, 0, &rc, &bound);
    FUZZ_CHECK(!none && rc == CEL_ETOOBIG && bound > 0, "an empty buffer gave %d with %zu bytes",
               rc, bound);

    /* exactly the bound must do */
    char *out = render(t, &req, bound, &rc, &len);
    FUZZ_CHECK(out, "render into the bound (%zu bytes) failed: %d, then asked for %zu", bound, rc,
               len);

    /* a buffer sized by the input: the CEL_ETOOBIG retry path, or the same output */
    size_t cap = spec.n ? (unsigned char)spec.p[0] : 16;
    if (cap > 0xf0)
        cap = bound + (cap - 0xf0) * 7; /* now and then past the bound */
    size_t len2;
    char *out2 = render(t, &req, cap, &rc, &len2);
    if (out2) {
        FUZZ_CHECK(len2 == len && memcmp(out2, out, len) == 0,
                   "a %zu-byte buffer rendered other bytes than a %zu-byte one", cap, bound);
        free(out2);
    } else {
        FUZZ_CHECK(cap < bound, "render into %zu >= bound %zu failed", cap, bound);
        FUZZ_CHECK(len2 == bound, "CEL_ETOOBIG asked for %zu, earlier for %zu", len2, bound);
        /* what the json handler does: retry with the size asked for */
        out2 = render(t, &req, len2, &rc, &len2);
        FUZZ_CHECK(out2, "the retry with the size asked for failed");
        free(out2);
    }

    /* whatever the request held, the output is JSON */
    json_t *back = json_loadb(out, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!back)
        fuzz_fail("output is not JSON: %s at %d: %.*s", je.text, je.position,
                  (int)(len < 2000 ? len : 2000), out);

    size_t klen;
    const char *k = cel_tmpl_constant(t, &klen);
    if (k) {
        FUZZ_CHECK(klen == len && memcmp(k, out, len) == 0, "constant differs from the render");
        FUZZ_CHECK(json_equal(back, root), "constant template does not round-trip: %.*s",
                   (int)(len < 2000 ? len : 2000), out);
    }

    json_decref(back);
    free(out);
    for (unsigned i = 0; i < nm.n; i++)
        free(nm.name[i]);
    for (size_t i = 0; i < nf; i++)
        free(fields[i]);
    cel_tmpl_free(t);
    json_decref(root);
    return 0;
}
