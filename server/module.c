#include "module.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "log.h"
#include "version.h"

struct cel_module_image {
    struct cel_module_image *next;
    char *path;
    struct stat st; /* identity of the file version loaded */
    void *dl;
    int fd; /* the private copy dl runs from; its number is dl's name */
    const celeris_module *desc;
    unsigned refs;
};

/* Loads happen on the main thread, but the last unref may come from a worker
 * that drops an old generation: the registry is shared. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static cel_module_image *images;

/* ctime as well as mtime: `cp -p` over the file may keep size and mtime, but
 * every write moves ctime, which no one can set back. */
static int same_version(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* The dynamic loader hands back an object it already has when the name (or
 * the file's identity) matches, and our names, /proc/self/fd/N, repeat as fd
 * numbers are reused. A memfd is a file of its own; kept open for the image's
 * life its name stays unique while the image is loaded, and RTLD_NOLOAD tells
 * whether an object that never unloaded (NODELETE, unique symbols) still holds
 * the name: then the copy moves to another fd number. */
#define MAX_NAME_TRIES 64

static int unused_name(int *fd, char *name, size_t len)
{
    int tried[MAX_NAME_TRIES], n = 0, rc = -1;
    for (;;) {
        snprintf(name, len, "/proc/self/fd/%d", *fd);
        void *old = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
        if (!old) {
            dlerror();
            rc = 0;
            break;
        }
        dlclose(old);
        if (n == MAX_NAME_TRIES)
            break;
        int next = fcntl(*fd, F_DUPFD_CLOEXEC, *fd + 1);
        if (next < 0)
            break;
        tried[n++] = *fd;
        *fd = next;
    }
    while (n)
        close(tried[--n]);
    return rc;
}

/* Bytes [OFF, OFF+LEN) of the file, or NULL when they are not all in it. */
static const uint8_t *span(const uint8_t *p, size_t n, uint64_t off, uint64_t len)
{
    return off <= n && len <= n - off ? p + off : NULL;
}

/* The CELERIS_VERSION_NUM a module's descriptor records, read from the file
 * (ENTRY is the descriptor's address): the module is never loaded when it
 * cannot run. 0 when the descriptor predates the field or is not found. */
static uint32_t header_version(const uint8_t *p, size_t n, const ElfW(Ehdr) * eh, uint64_t entry)
{
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        ElfW(Phdr) ph;
        const uint8_t *at = span(p, n, eh->e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
        if (!at)
            return 0;
        memcpy(&ph, at, sizeof(ph));
        if (ph.p_type != PT_LOAD || entry < ph.p_vaddr || entry - ph.p_vaddr >= ph.p_filesz)
            continue;
        uint64_t off = ph.p_offset + (entry - ph.p_vaddr);
        uint32_t size, version;
        const uint8_t *d = span(p, n, off, offsetof(celeris_module, header_version) + 4);
        if (!d)
            return 0;
        memcpy(&size, d + offsetof(celeris_module, size), 4);
        if (size < offsetof(celeris_module, header_version) + 4)
            return 0;
        memcpy(&version, d + offsetof(celeris_module, header_version), 4);
        return version;
    }
    return 0;
}

/* Resolves, before the module is loaded, every function it calls that the
 * daemon should provide: the undefined, non-weak celeris_* symbols of its
 * dynamic symbol table, each looked up among the daemon's exports. Loading
 * would otherwise fail with the loader's bare "undefined symbol" (or, bound
 * lazily, kill the process at the first call). A file this cannot read as an
 * ELF object of our class passes: dlopen then says what is wrong with it. */
static int check_imports(const char *path, const char *route, const uint8_t *p, size_t n, char *err,
                         size_t errlen)
{
    ElfW(Ehdr) eh;
    if (n < sizeof(eh))
        return 0;
    memcpy(&eh, p, sizeof(eh));
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
        eh.e_ident[EI_CLASS] != (sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32) ||
        eh.e_shentsize != sizeof(ElfW(Shdr)))
        return 0;
    ElfW(Shdr) sym = {0}, str = {0};
    for (unsigned i = 0; i < eh.e_shnum; i++) {
        const uint8_t *at = span(p, n, eh.e_shoff + (uint64_t)i * sizeof(sym), sizeof(sym));
        if (!at)
            return 0;
        memcpy(&sym, at, sizeof(sym));
        if (sym.sh_type == SHT_DYNSYM)
            break;
        sym.sh_type = SHT_NULL;
    }
    const uint8_t *link, *strs;
    if (sym.sh_type != SHT_DYNSYM || !span(p, n, sym.sh_offset, sym.sh_size) ||
        !(link = span(p, n, eh.e_shoff + (uint64_t)sym.sh_link * sizeof(str), sizeof(str))))
        return 0;
    memcpy(&str, link, sizeof(str));
    if (!(strs = span(p, n, str.sh_offset, str.sh_size)))
        return 0;

    const char *missing = NULL;
    unsigned more = 0;
    uint64_t entry = 0;
    for (uint64_t off = 0; off + sizeof(ElfW(Sym)) <= sym.sh_size; off += sizeof(ElfW(Sym))) {
        ElfW(Sym) s;
        memcpy(&s, p + sym.sh_offset + off, sizeof(s));
        if (s.st_name >= str.sh_size || !memchr(strs + s.st_name, 0, str.sh_size - s.st_name))
            continue;
        const char *name = (const char *)strs + s.st_name;
        if (s.st_shndx != SHN_UNDEF) {
            if (strcmp(name, CELERIS_MODULE_SYMBOL) == 0)
                entry = s.st_value;
        } else if (ELF64_ST_BIND(s.st_info) == STB_GLOBAL && strncmp(name, "celeris_", 8) == 0 &&
                   !dlsym(RTLD_DEFAULT, name)) {
            if (missing)
                more++;
            else
                missing = name;
        }
    }
    if (!missing)
        return 0;

    uint32_t v = entry ? header_version(p, n, &eh, entry) : 0;
    char others[64] = "", built[160];
    if (more)
        snprintf(others, sizeof(others), " (and %u more celeris_* function%s)", more,
                 more == 1 ? "" : "s");
    if (!v)
        snprintf(built, sizeof(built), "the module was built against another celeris/module.h");
    else
        snprintf(built, sizeof(built),
                 "the module was built against the celeris/module.h of celerisd %u.%u.%u%s",
                 v >> 16, (v >> 8) & 0xff, v & 0xff,
                 v > CELERIS_VERSION_NUM ? ": run it on that release or a later one"
                                         : ", which does not declare it either");
    snprintf(err, errlen,
             "module \"%s\" (route \"%s\") needs %s%s, which this celerisd %s (module ABI %u) "
             "does not have: %s",
             path, route, missing, others, CEL_VERSION, CELERIS_MODULE_ABI_VERSION, built);
    return CEL_EINVAL;
}

/* Copies the open module file IN into a memfd and loads that: the image never
 * maps the file, so rewriting it in place (cp over it) cannot touch loaded
 * code. *FD is the memfd, open for as long as the image is loaded. */
static void *open_copy(const char *path, const char *route, int in, off_t size, int *fd, char *err,
                       size_t errlen)
{
    int mfd = memfd_create("celeris-module", MFD_CLOEXEC);
    if (mfd < 0) {
        snprintf(err, errlen, "cannot copy module \"%s\": %s", path, strerror(errno));
        return NULL;
    }
    off_t off = 0;
    while (off < size) {
        ssize_t n = sendfile(mfd, in, &off, (size_t)(size - off));
        if (n <= 0) {
            snprintf(err, errlen, "cannot copy module \"%s\": %s", path,
                     n < 0 ? strerror(errno) : "short read");
            close(mfd);
            return NULL;
        }
    }
    if (size > 0) {
        void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, mfd, 0);
        int rc = p == MAP_FAILED ? 0 : check_imports(path, route, p, (size_t)size, err, errlen);
        if (p != MAP_FAILED)
            munmap(p, (size_t)size);
        if (rc) {
            close(mfd);
            return NULL;
        }
    }
    char name[64];
    if (unused_name(&mfd, name, sizeof(name))) {
        snprintf(err, errlen, "cannot load module \"%s\": no unused name for its copy", path);
        close(mfd);
        return NULL;
    }
    void *dl = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        snprintf(err, errlen, "cannot load module \"%s\": %s", path, dlerror());
        close(mfd);
        return NULL;
    }
    *fd = mfd;
    return dl;
}

static int check_desc(const char *path, const celeris_module *d, char *err, size_t errlen)
{
    if (!d) {
        snprintf(err, errlen,
                 "module \"%s\" has no %s symbol (is it a celerisd module? declare it with "
                 "CELERIS_MODULE)",
                 path, CELERIS_MODULE_SYMBOL);
        return CEL_EINVAL;
    }
    if (d->abi_version != CELERIS_MODULE_ABI_VERSION) {
        snprintf(err, errlen,
                 "module \"%s\" (%s) was built for module ABI version %u; this celerisd "
                 "speaks version %u: rebuild it against this celerisd's celeris/module.h",
                 path, d->name ? d->name : "unnamed", d->abi_version, CELERIS_MODULE_ABI_VERSION);
        return CEL_EINVAL;
    }
    if (d->size < offsetof(celeris_module, handle) + sizeof(d->handle)) {
        snprintf(err, errlen, "module \"%s\": descriptor too small (%u bytes)", path, d->size);
        return CEL_EINVAL;
    }
    if (!d->handle && !(CEL_MODULE_HAS(d, on_request) && d->on_request) &&
        !(CEL_MODULE_HAS(d, on_response_head) && d->on_response_head)) {
        snprintf(err, errlen, "module \"%s\" has no handle function (nor middleware functions)",
                 path);
        return CEL_EINVAL;
    }
    return 0;
}

int cel_module_load(const char *path, const char *route, cel_module_image **out, char *err,
                    size_t errlen)
{
    /* The version is what this descriptor holds, so the copy is made from it. */
    int in = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (in < 0 || fstat(in, &st) < 0) {
        snprintf(err, errlen, "cannot open module \"%s\": %s", path, strerror(errno));
        if (in >= 0)
            close(in);
        return CEL_EINVAL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "module \"%s\" is not a regular file", path);
        close(in);
        return CEL_EINVAL;
    }
    pthread_mutex_lock(&lock);
    int stale = 0;
    for (cel_module_image *m = images; m; m = m->next) {
        if (same_version(&m->st, &st)) {
            m->refs++;
            pthread_mutex_unlock(&lock);
            close(in);
            *out = m;
            return 0;
        }
        stale |=
            strcmp(m->path, path) == 0 || (m->st.st_dev == st.st_dev && m->st.st_ino == st.st_ino);
    }
    pthread_mutex_unlock(&lock);

    int fd = -1;
    void *dl = open_copy(path, route, in, st.st_size, &fd, err, errlen);
    close(in);
    if (!dl)
        return CEL_EINVAL;
    const celeris_module *d = dlsym(dl, CELERIS_MODULE_SYMBOL);
    int rc = check_desc(path, d, err, errlen);
    cel_module_image *m = rc ? NULL : calloc(1, sizeof(*m));
    if (!rc && (!m || !(m->path = strdup(path)))) {
        snprintf(err, errlen, "out of memory loading module \"%s\"", path);
        free(m);
        m = NULL;
        rc = CEL_ENOMEM;
    }
    if (rc) {
        dlclose(dl);
        close(fd);
        return rc;
    }
    m->st = st;
    m->dl = dl;
    m->fd = fd;
    m->desc = d;
    m->refs = 1;
    pthread_mutex_lock(&lock);
    m->next = images;
    images = m;
    pthread_mutex_unlock(&lock);
    if (stale)
        cel_log(CEL_LOG_INFO, "module \"%s\" changed on disk: loaded the new version", path);
    *out = m;
    return 0;
}

const celeris_module *cel_module_desc(const cel_module_image *m)
{
    return m->desc;
}

const char *cel_module_name(const cel_module_image *m)
{
    const celeris_module *d = m->desc;
    if (d->name && d->name[0])
        return d->name;
    if (d->size >= offsetof(celeris_module, declared_name) + sizeof(d->declared_name))
        return d->declared_name;
    return NULL;
}

const char *cel_module_path(const cel_module_image *m)
{
    return m->path;
}

void cel_module_unref(cel_module_image *m)
{
    pthread_mutex_lock(&lock);
    if (--m->refs) {
        pthread_mutex_unlock(&lock);
        return;
    }
    for (cel_module_image **p = &images; *p; p = &(*p)->next)
        if (*p == m) {
            *p = m->next;
            break;
        }
    pthread_mutex_unlock(&lock);
    dlclose(m->dl);
    close(m->fd);
    free(m->path);
    free(m);
}
