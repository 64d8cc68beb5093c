/* json.h -- append JSON string literals to a kv_buf_t, for the /status
 * document and anything else the node writes as JSON.
 *
 * json_append_str writes "..." with the escapes JSON requires (quote,
 * backslash, control characters; \n \r \t \b \f in their short forms, the
 * rest as \u00XX). Input is taken as UTF-8: a byte that does not start a
 * well-formed sequence (stray continuation, overlong form, surrogate, above
 * U+10FFFF, truncated) becomes U+FFFD, so the output is always valid JSON
 * whatever the bytes were (host names, paths and peer-supplied names are
 * not guaranteed UTF-8). Header-only: the functions are small and static.
 */
#ifndef CAIRN_NODE_JSON_H
#define CAIRN_NODE_JSON_H

#include "kv.h"

/* Length of the well-formed UTF-8 sequence at p (n bytes left), 0 if none. */
static inline size_t json_utf8_len(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;      /* overlong */
        else if (c == 0xed) hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;      /* overlong */
        else if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    return len;
}

/* Append s[0..n) as a quoted, escaped JSON string. */
static inline void json_append_strn(kv_buf_t *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)s;
    kv_buf_reserve(out, n + 2);
    kv_buf_append_u8(out, '"');
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default: break;
        }
        if (esc) {
            kv_buf_append(out, esc, 2);
            i++;
        } else if (c < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            kv_buf_append(out, u, sizeof u);
            i++;
        } else {
            size_t len = json_utf8_len(p + i, n - i);
            if (len == 0) {
                kv_buf_append(out, "\xef\xbf\xbd", 3); /* U+FFFD */
                i++;
            } else {
                kv_buf_append(out, p + i, len);
                i += len;
            }
        }
    }
    kv_buf_append_u8(out, '"');
}

/* Append the NUL-terminated s as a JSON string; NULL becomes null. */
static inline void json_append_str(kv_buf_t *out, const char *s)
{
    if (!s) kv_buf_append(out, "null", 4);
    else json_append_strn(out, s, strlen(s));
}

#endif /* CAIRN_NODE_JSON_H */
