/* Small types and error codes shared by every unit of the daemon. */
#ifndef CEL_COMMON_H
#define CEL_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Error codes: functions return 0 or one of these (negative). */
#define CEL_OK 0
#define CEL_ENOMEM (-1)
#define CEL_EINVAL (-2)
#define CEL_ETOOBIG (-3)
#define CEL_ENOTFOUND (-4)
#define CEL_EEXIST (-5)
#define CEL_EIO (-6)
#define CEL_EAGAIN (-7)

/* A byte slice that does not own its memory. Not NUL-terminated unless said. */
typedef struct cel_str {
    const char *p;
    size_t n;
} cel_str;

#define CEL_STR_LIT(s) ((cel_str){(s), sizeof(s) - 1})
#define CEL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define CEL_LIKELY(x) __builtin_expect(!!(x), 1)
#define CEL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define CEL_LIKELY(x) (x)
#define CEL_UNLIKELY(x) (x)
#endif

#endif
