#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conn_view.h"
#include "middleware.h"
#include "proxy_proto.h"
#include "real_ip.h"

typedef struct mw_access {
    cel_mw base;
    cel_cidr *allow, *deny;
    size_t nallow, ndeny;
    int allow_all, deny_all;
} mw_access;

/* -1: no list names it; 1: allowed; 0: denied. */
static int verdict(const mw_access *a, int fam, const uint8_t *addr)
{
    if (a->allow_all || (fam && cel_cidr_match(a->allow, a->nallow, fam, addr)))
        return 1;
    if (a->deny_all || (fam && cel_cidr_match(a->deny, a->ndeny, fam, addr)))
        return 0;
    return -1;
}

static int request(const cel_mw *m, cel_exchange *x, cel_response *res)
{
    const mw_access *a = (const mw_access *)m;
    const cel_conn_view *cv = x->conn;
    int v;
    if (!x->real_ip && cv && cv->peer_family) {
        /* the connection's address, in binary since it was accepted */
        v = verdict(a, cv->peer_family, cv->peer_addr);
    } else {
        const char *peer = cv ? cv->peer : "-";
        char buf[64];
        if (x->real_ip)
            peer = cel_real_ip_of(x->real_ip, x->req, peer, buf, sizeof(buf));
        uint8_t addr[16];
        int fam = 0;
        if (inet_pton(AF_INET, peer, addr) == 1)
            fam = AF_INET;
        else if (inet_pton(AF_INET6, peer, addr) == 1)
            fam = AF_INET6;
        v = verdict(a, fam, addr);
    }
    if (v == 1 || (v == -1 && !(a->nallow && !a->ndeny)))
        return 0;
    cel_response_error(res, 403);
    return CEL_MW_ANSWERED;
}

static void destroy(cel_mw *m)
{
    free(((mw_access *)m)->allow);
    free(m);
}

static const cel_mw_ops ops = {.request = request, .destroy = destroy};

cel_mw *cel_mw_access_new(const cel_cidr *allow, size_t nallow, int allow_all, const cel_cidr *deny,
                          size_t ndeny, int deny_all)
{
    mw_access *a = calloc(1, sizeof(*a));
    if (!a || !(a->allow = malloc((nallow + ndeny + 1) * sizeof(cel_cidr)))) {
        free(a);
        return NULL;
    }
    a->base = (cel_mw){&ops, "access"};
    a->deny = a->allow + nallow;
    memcpy(a->allow, allow, nallow * sizeof(cel_cidr));
    memcpy(a->deny, deny, ndeny * sizeof(cel_cidr));
    a->nallow = nallow, a->ndeny = ndeny;
    a->allow_all = allow_all, a->deny_all = deny_all;
    return &a->base;
}
