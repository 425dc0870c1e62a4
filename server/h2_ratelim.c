#include "h2_ratelim.h"

#include <nghttp2/nghttp2.h>

void cel_bucket_init(cel_bucket *b, uint32_t burst, uint32_t rate, time_t now)
{
    *b = (cel_bucket){burst, burst, rate, now};
}

int cel_bucket_take(cel_bucket *b, time_t now)
{
    /* NOW is the wall clock the Date field uses: set back, it refills
     * nothing (a difference taken as unsigned would refill to the brim) */
    if (now > b->at) {
        uint64_t refill = (uint64_t)(now - b->at) * b->rate + b->tokens;
        b->tokens = refill > b->burst ? b->burst : (uint32_t)refill;
    }
    b->at = now;
    if (b->tokens == 0)
        return -1;
    b->tokens--;
    return 0;
}

int cel_h2_is_glitch(uint8_t type, uint8_t flags, uint32_t len)
{
    switch (type) {
    case NGHTTP2_DATA:
        return len == 0 && !(flags & NGHTTP2_FLAG_END_STREAM);
    case NGHTTP2_PRIORITY:
        return 1;
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PING:
        return !(flags & NGHTTP2_FLAG_ACK);
    default:
        return type > NGHTTP2_CONTINUATION;
    }
}
