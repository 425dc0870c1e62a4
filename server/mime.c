/* The media type table: open addressing on the lowercased extension. */
#include "mime.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "http.h"

#define EXT_MAX 32

typedef struct entry {
    char ext[EXT_MAX]; /* lowercase, NUL-terminated; "" for a free slot */
    size_t ext_len;
    cel_str type; /* its own heap copy */
} entry;

typedef struct table {
    entry *slots;
    size_t cap, used; /* cap a power of two */
} table;

/* The system file's table, parsed once and shared by every route that reads
 * the same file (path, size, mtime), in one configuration and across reloads:
 * a config of many dir routes parses /etc/mime.types once, not per route. */
typedef struct shared {
    struct shared *next;
    char *path;
    off_t size;
    struct timespec mtime;
    size_t refs; /* under lock */
    table t;
} shared;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static shared *all;

struct cel_mime {
    table own;    /* the route's entries */
    shared *base; /* the system file's, or NULL */
};

static uint64_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static entry *find(const table *m, const char *ext, size_t n)
{
    for (size_t i = hash(ext, n) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        entry *e = &m->slots[i];
        if (!e->ext_len || (e->ext_len == n && memcmp(e->ext, ext, n) == 0))
            return e;
    }
}

static int grow(table *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
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

static int set(table *m, const char *ext, const char *type)
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

static int load(table *m, FILE *f)
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
            if (set(m, ext, full))
                return CEL_ENOMEM;
    }
    return 0;
}

static void table_free(table *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].ext_len)
            free((char *)m->slots[i].type.p);
    free(m->slots);
}

int cel_mime_set(cel_mime *m, const char *ext, const char *type)
{
    return set(&m->own, ext, type);
}

/* The shared table of FILE, parsed now unless a holder has it; NULL when
 * the file cannot be read (no system table) or memory runs out. */
static shared *base_get(const char *file)
{
    FILE *f = fopen(file, "r");
    struct stat st;
    if (!f)
        return NULL;
    if (fstat(fileno(f), &st)) {
        fclose(f);
        return NULL;
    }
    pthread_mutex_lock(&lock);
    for (shared *b = all; b; b = b->next)
        if (!strcmp(b->path, file) && b->size == st.st_size &&
            b->mtime.tv_sec == st.st_mtim.tv_sec && b->mtime.tv_nsec == st.st_mtim.tv_nsec) {
            b->refs++;
            pthread_mutex_unlock(&lock);
            fclose(f);
            return b;
        }
    pthread_mutex_unlock(&lock);
    shared *b = calloc(1, sizeof(*b));
    int bad = !b || !(b->path = strdup(file)) || grow(&b->t) || load(&b->t, f);
    fclose(f);
    if (bad) {
        if (b) {
            table_free(&b->t);
            free(b->path);
            free(b);
        }
        return NULL;
    }
    b->size = st.st_size;
    b->mtime = st.st_mtim;
    b->refs = 1;
    pthread_mutex_lock(&lock);
    b->next = all;
    all = b;
    pthread_mutex_unlock(&lock);
    return b;
}

static void base_unref(shared *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&lock);
    int last = --b->refs == 0;
    if (last)
        for (shared **p = &all; *p; p = &(*p)->next)
            if (*p == b) {
                *p = b->next;
                break;
            }
    pthread_mutex_unlock(&lock);
    if (last) {
        table_free(&b->t);
        free(b->path);
        free(b);
    }
}

cel_mime *cel_mime_new(const char *file)
{
    cel_mime *m = calloc(1, sizeof(*m));
    if (!m || grow(&m->own)) {
        free(m);
        return NULL;
    }
    m->base = file ? base_get(file) : NULL;
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
        const entry *e = find(&m->own, low, k);
        if (e->ext_len)
            return e->type;
        if (m->base && (e = find(&m->base->t, low, k))->ext_len)
            return e->type;
    }
    return CEL_STR_LIT(CEL_MIME_DEFAULT);
}

void cel_mime_free(cel_mime *m)
{
    if (!m)
        return;
    table_free(&m->own);
    base_unref(m->base);
    free(m);
}
