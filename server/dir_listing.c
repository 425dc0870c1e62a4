/* Directory listings for the dir handler; see dir_listing.h. */
#include "dir_listing.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"

static size_t put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return n;
}
#define PUT_LIT(p, lit) put(p, lit, sizeof(lit) - 1)

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int unreserved(unsigned char c)
{
    return cel_http_is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static size_t html_escape(char *p, const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '&':
            k += PUT_LIT(p + k, "&amp;");
            break;
        case '<':
            k += PUT_LIT(p + k, "&lt;");
            break;
        case '>':
            k += PUT_LIT(p + k, "&gt;");
            break;
        case '"':
            k += PUT_LIT(p + k, "&quot;");
            break;
        case '\'':
            k += PUT_LIT(p + k, "&#39;");
            break;
        default:
            p[k++] = s[i];
        }
    }
    return k;
}

static size_t url_escape(char *p, const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c)) {
            p[k++] = (char)c;
        } else {
            p[k++] = '%';
            p[k++] = "0123456789ABCDEF"[c >> 4];
            p[k++] = "0123456789ABCDEF"[c & 15];
        }
    }
    return k;
}

int cel_dir_listing(cel_exchange *x, cel_response *res, int dir)
{
    int fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dp = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dp) {
        if (fd >= 0)
            close(fd);
        cel_response_error(res, 403);
        return 0;
    }
    char **names = NULL;
    size_t n = 0, cap = 0, bytes = 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(dp));) {
        if (e->d_name[0] == '.')
            continue;
        int sub = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN || e->d_type == DT_LNK) {
            struct stat st;
            sub = fstatat(dirfd(dp), e->d_name, &st, 0) == 0 && S_ISDIR(st.st_mode);
        }
        size_t len = strlen(e->d_name);
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof(*names));
            if (!nn) {
                rc = CEL_ENOMEM;
                break;
            }
            names = nn;
        }
        if (!(names[n] = malloc(len + 2))) {
            rc = CEL_ENOMEM;
            break;
        }
        memcpy(names[n], e->d_name, len);
        names[n][len] = sub ? '/' : 0;
        names[n][len + 1] = 0;
        bytes += 30 + 9 * len;
        n++;
    }
    closedir(dp);
    char *page = NULL;
    size_t k = 0;
    cel_str path = x->req->path;
    if (!rc) {
        qsort(names, n, sizeof(*names), by_name);
        size_t size = 200 + 12 * path.n + bytes;
        if ((page = cel_arena_alloc(x->arena, size))) {
            k += PUT_LIT(page + k, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
            k += html_escape(page + k, path.p, path.n);
            k += PUT_LIT(page + k, "</title></head>\n<body><h1>");
            k += html_escape(page + k, path.p, path.n);
            k += PUT_LIT(page + k, "</h1>\n<ul>\n");
            for (size_t i = 0; i < n; i++) {
                size_t len = strlen(names[i]);
                int sub = len > 0 && names[i][len - 1] == '/';
                char esc[3 * 256];
                size_t el = url_escape(esc, names[i], len - (size_t)sub);
                k += PUT_LIT(page + k, "<li><a href=\"");
                k += html_escape(page + k, esc, el);
                if (sub)
                    page[k++] = '/';
                k += PUT_LIT(page + k, "\">");
                k += html_escape(page + k, names[i], len);
                k += PUT_LIT(page + k, "</a></li>\n");
            }
            k += PUT_LIT(page + k, "</ul>\n</body></html>\n");
        } else {
            rc = CEL_ENOMEM;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc)
        return rc;
    res->status = 200;
    res->content_type = CEL_STR_LIT("text/html; charset=utf-8");
    res->body = page;
    res->body_len = k;
    return 0;
}
