/* The YAML helpers of conf.h: reading scalars, walking mappings, key tables. */
#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

yaml_node_t *conf_node(conf_ctx *c, int index)
{
    return yaml_document_get_node(c->doc, index);
}

cel_loc conf_loc(const yaml_node_t *n)
{
    return (cel_loc){(unsigned)n->start_mark.line + 1, (unsigned)n->start_mark.column + 1};
}

int conf_error(conf_ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
    cel_loc l = conf_loc(n);
    int k = snprintf(c->err, c->errlen, "%s:%u:%u: ", c->file, l.line, l.col);
    if (k < 0 || (size_t)k >= c->errlen)
        return CEL_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + k, c->errlen - (size_t)k, fmt, ap);
    va_end(ap);
    return CEL_EINVAL;
}

static const char *type_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a mapping";
    default:
        return "empty";
    }
}

int conf_want(conf_ctx *c, const yaml_node_t *n, yaml_node_type_t type, const char *what)
{
    if (n->type == type)
        return 0;
    const char *want = type == YAML_SCALAR_NODE     ? "a scalar"
                       : type == YAML_SEQUENCE_NODE ? "a list"
                                                    : "a mapping";
    return conf_error(c, n, "%s must be %s, not %s", what, want, type_name(n));
}

int conf_has_nul(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE &&
           memchr(n->data.scalar.value, 0, n->data.scalar.length) != NULL;
}

int conf_string(conf_ctx *c, const yaml_node_t *n, const char *what, const char **out)
{
    if (n->type != YAML_SCALAR_NODE)
        return conf_error(c, n, "%s must be a string, not %s", what, type_name(n));
    /* C would silently cut the string at the NUL ("/a\0b" would serve "/a"). */
    if (conf_has_nul(n))
        return conf_error(c, n, "%s must not contain a NUL byte", what);
    *out = (const char *)n->data.scalar.value;
    return 0;
}

int conf_bool(conf_ctx *c, const yaml_node_t *v, const char *what, int *out)
{
    const char *s;
    int rc = conf_string(c, v, what, &s);
    if (rc)
        return rc;
    if (!strcmp(s, "true") || !strcmp(s, "on"))
        *out = 1;
    else if (!strcmp(s, "false") || !strcmp(s, "off"))
        *out = 0;
    else
        return conf_error(c, v, "%s must be true or false, not \"%s\"", what, s);
    return 0;
}

int conf_wire_string(conf_ctx *c, const yaml_node_t *n, const char *what, int tab_ok,
                     const char **out)
{
    int rc = conf_string(c, n, what, out);
    if (rc)
        return rc;
    for (const unsigned char *p = (const unsigned char *)*out; *p; p++)
        if ((*p < 0x20 && !(tab_ok && *p == '\t')) || *p == 0x7f)
            return conf_error(c, n, "%s has a control character (byte 0x%02x)", what, *p);
    return 0;
}

int conf_int(conf_ctx *c, const yaml_node_t *n, const char *what, long long min, long long max,
             long long *out)
{
    const char *s;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return conf_error(c, n, "%s must be a number", what);
    s = (const char *)n->data.scalar.value;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno)
        return conf_error(c, n, "%s must be a number, not \"%s\"", what, s);
    if (v < min || v > max)
        return conf_error(c, n, "%s must be between %lld and %lld", what, min, max);
    *out = v;
    return 0;
}

int conf_size(conf_ctx *c, const yaml_node_t *n, const char *what, size_t min, size_t max,
              size_t *out)
{
    if (n->type != YAML_SCALAR_NODE)
        return conf_error(c, n, "%s must be a size like 65536 or \"64k\"", what);
    const char *s = (const char *)n->data.scalar.value;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-')
        return conf_error(c, n, "%s must be a size like 65536 or \"64k\", not \"%s\"", what, s);
    unsigned shift = 0;
    switch (tolower((unsigned char)*end)) {
    case 0:
        break;
    case 'k':
        shift = 10;
        break;
    case 'm':
        shift = 20;
        break;
    case 'g':
        shift = 30;
        break;
    default:
        return conf_error(c, n, "%s: unknown size unit in \"%s\" (use k, m or g)", what, s);
    }
    if (*end && end[1])
        return conf_error(c, n, "%s: unknown size unit in \"%s\" (use k, m or g)", what, s);
    if (v > (SIZE_MAX >> shift) || (v << shift) < min || (v << shift) > max)
        return conf_error(c, n, "%s must be between %zu and %zu bytes", what, min, max);
    *out = (size_t)(v << shift);
    return 0;
}

int conf_duration_ms(conf_ctx *c, const yaml_node_t *n, const char *what, uint32_t *out)
{
    if (n->type != YAML_SCALAR_NODE)
        return conf_error(c, n, "%s must be a duration like 10 or \"500ms\"", what);
    const char *s = (const char *)n->data.scalar.value;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0 || *s == '-' || !isdigit((unsigned char)*s))
        return conf_error(c, n, "%s must be a duration like 10 or \"500ms\", not \"%s\"", what, s);
    double ms;
    if (!*end || strcmp(end, "s") == 0)
        ms = v * 1000;
    else if (strcmp(end, "ms") == 0)
        ms = v;
    else if (strcmp(end, "m") == 0)
        ms = v * 60000;
    else if (strcmp(end, "h") == 0)
        ms = v * 3600000;
    else
        return conf_error(c, n, "%s: unknown duration unit in \"%s\" (use ms, s, m or h)", what, s);
    if (ms < 1 || ms > 86400000.0 * 7)
        return conf_error(c, n, "%s must be between 1ms and 7 days", what);
    *out = (uint32_t)ms;
    return 0;
}

int conf_mapping(conf_ctx *c, yaml_node_t *n, const char *what, conf_pair_fn fn, void *arg)
{
    int rc = conf_want(c, n, YAML_MAPPING_NODE, what);
    if (rc)
        return rc;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = conf_node(c, p->key), *v = conf_node(c, p->value);
        if (k->type != YAML_SCALAR_NODE)
            return conf_error(c, k, "keys in %s must be strings", what);
        if (conf_has_nul(k))
            return conf_error(c, k, "keys in %s must not contain a NUL byte", what);
        const char *key = (const char *)k->data.scalar.value;
        for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k2 = conf_node(c, q->key);
            if (k2->type == YAML_SCALAR_NODE &&
                strcmp((const char *)k2->data.scalar.value, key) == 0)
                return conf_error(c, k, "duplicate key \"%s\" in %s (first at line %u)", key, what,
                                  conf_loc(k2).line);
        }
        if ((rc = fn(c, arg, key, k, v)))
            return rc;
    }
    return 0;
}

int conf_unknown_key(conf_ctx *c, const yaml_node_t *k, const char *where, const char *allowed)
{
    return conf_error(c, k, "unknown key \"%s\" in %s (expected one of: %s)",
                      (const char *)k->data.scalar.value, where, allowed);
}

const char *conf_key_list(char *buf, size_t len, const void *rows, size_t n, size_t stride)
{
    size_t used = strlen(buf);
    for (size_t i = 0; i < n && used < len; i++) {
        const char *key = *(const char *const *)((const char *)rows + i * stride);
        int k = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", key);
        if (k < 0)
            break;
        used += (size_t)k;
    }
    return buf;
}

int conf_key_call(conf_ctx *c, const conf_key *keys, size_t n, const char *where, void *arg,
                  const char *key, yaml_node_t *k, yaml_node_t *v)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(key, keys[i].key) == 0)
            return keys[i].fn(c, arg, key, k, v);
    char allowed[512] = "";
    return conf_unknown_key(c, k, where,
                            conf_key_list(allowed, sizeof(allowed), keys, n, sizeof(keys[0])));
}
