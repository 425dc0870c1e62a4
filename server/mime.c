/* The media type table: open addressing on the lowercased extension. */
#include "mime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define EXT_MAX 32

typedef struct entry {
    char ext[EXT_MAX]; /* lowercase, NUL-terminated; "" for a free slot */
    size_t ext_len;
    cel_str type; /* its own heap copy */
} entry;

struct cel_mime {
    entry *slots;
    size_t cap, used; /* cap a power of two */
};

static uint64_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static entry *find(const cel_mime *m, const char *ext, size_t n)
{
    for (size_t i = hash(ext, n) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        entry *e = &m->slots[i];
        if (!e->ext_len || (e->ext_len == n && memcmp(e->ext, ext, n) == 0))
            return e;
    }
}

static int grow(cel_mime *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    entry *old = m->slots;
    size_t ocap = m->cap;
    entry *s = calloc(cap, sizeof(*s));
    if (!s)
        return CEL_ENOMEM;
    m->slots = s;
    m->cap = cap;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].ext_len)
            *find(m, old[i].ext, old[i].ext_len) = old[i];
    free(old);
    return 0;
}

int cel_mime_set(cel_mime *m, const char *ext, const char *type)
{
    if (*ext == '.')
        ext++;
    size_t n = strlen(ext);
    if (n == 0 || n >= EXT_MAX)
        return 0; /* no name can end in it */
    char low[EXT_MAX];
    for (size_t i = 0; i < n; i++)
        low[i] = (char)cel_http_lower((unsigned char)ext[i]);
    low[n] = 0;
    if ((m->used + 1) * 2 > m->cap && grow(m))
        return CEL_ENOMEM;
    char *t = strdup(type);
    if (!t)
        return CEL_ENOMEM;
    entry *e = find(m, low, n);
    if (e->ext_len) {
        free((char *)e->type.p);
    } else {
        memcpy(e->ext, low, n + 1);
        e->ext_len = n;
        m->used++;
    }
    e->type = (cel_str){t, strlen(t)};
    return 0;
}

static int load(cel_mime *m, FILE *f)
{
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        char *save = NULL, *type = strtok_r(line, " \t\r\n", &save);
        if (!type || type[0] == '#')
            continue;
        char full[256];
        if (strncmp(type, "text/", 5) == 0)
            snprintf(full, sizeof(full), "%s; charset=utf-8", type);
        else
            snprintf(full, sizeof(full), "%s", type);
        for (char *ext; (ext = strtok_r(NULL, " \t\r\n", &save));)
            if (cel_mime_set(m, ext, full))
                return CEL_ENOMEM;
    }
    return 0;
}

cel_mime *cel_mime_new(const char *file)
{
    cel_mime *m = calloc(1, sizeof(*m));
    if (!m || grow(m)) {
        free(m);
        return NULL;
    }
    FILE *f = file ? fopen(file, "r") : NULL;
    if (f) {
        int rc = load(m, f);
        fclose(f);
        if (rc) {
            cel_mime_free(m);
            return NULL;
        }
    }
    return m;
}

cel_str cel_mime_lookup(const cel_mime *m, const char *name, size_t n)
{
    size_t dot = n;
    while (dot > 0 && name[dot - 1] != '.' && name[dot - 1] != '/')
        dot--;
    size_t k = n - dot;
    if (dot > 0 && name[dot - 1] == '.' && k > 0 && k < EXT_MAX) {
        char low[EXT_MAX];
        for (size_t i = 0; i < k; i++)
            low[i] = (char)cel_http_lower((unsigned char)name[dot + i]);
        const entry *e = find(m, low, k);
        if (e->ext_len)
            return e->type;
    }
    return CEL_STR_LIT(CEL_MIME_DEFAULT);
}

void cel_mime_free(cel_mime *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].ext_len)
            free((char *)m->slots[i].type.p);
    free(m->slots);
    free(m);
}
