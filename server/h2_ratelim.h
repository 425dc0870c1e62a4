/*
 * The HTTP/2 front end's flood limits: token buckets refilled once a second
 * (glitches, resets: limits.glitch_* and limits.reset_*), and which frames a
 * client sends count as glitches. No state beyond the bucket; the caller
 * passes the time (the worker's env->date_sec) and decides what running dry
 * means (h2_police.c ends the connection with ENHANCE_YOUR_CALM).
 */
#ifndef CEL_H2_RATELIM_H
#define CEL_H2_RATELIM_H

#include <stdint.h>
#include <time.h>

/* A token bucket refilled once a second. */
typedef struct cel_bucket {
    uint32_t tokens, burst, rate;
    time_t at;
} cel_bucket;

/* A full bucket (BURST tokens) at NOW, which gains RATE tokens a second up to
 * BURST. */
void cel_bucket_init(cel_bucket *b, uint32_t burst, uint32_t rate, time_t now);

/* Takes a token at NOW (seconds, not going back); -1 when none is left. */
int cel_bucket_take(cel_bucket *b, time_t now);

/* Whether a frame with this header is a glitch, a frame that costs us work and
 * gives none: PRIORITY, empty DATA that does not end the stream, unknown types,
 * and PING and SETTINGS (their ACK queue is bounded by nghttp2, their rate only
 * here). nghttp2 1.52 has no limiter for these of its own. */
int cel_h2_is_glitch(uint8_t type, uint8_t flags, uint32_t len);

#endif
