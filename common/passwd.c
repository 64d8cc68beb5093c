/* passwd.c -- PBKDF2 password hashes and users-file lines (passwd.h). */
#include "passwd.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define SALT_LEN 16
#define KEY_LEN 32
#define PREFIX "pbkdf2-sha256$"

const char *kv_role_str(kv_role_t r)
{
    switch (r) {
    case KV_ROLE_READ: return "read";
    case KV_ROLE_READWRITE: return "readwrite";
    case KV_ROLE_ADMIN: return "admin";
    case KV_ROLE_NONE: break;
    }
    return "none";
}

bool kv_role_parse(const char *s, size_t len, kv_role_t *out)
{
    static const kv_role_t all[] = {KV_ROLE_READ, KV_ROLE_READWRITE, KV_ROLE_ADMIN};
    for (size_t i = 0; i < KV_ARRAY_LEN(all); i++) {
        const char *n = kv_role_str(all[i]);
        if (strlen(n) == len && memcmp(n, s, len) == 0) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

bool kv_user_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > KV_USER_MAX) return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.@-", s[i])) return false;
    return true;
}

static bool derive(kv_slice_t pw, const uint8_t *salt, size_t salt_len, uint32_t iter,
                   uint8_t key[KEY_LEN])
{
    return PKCS5_PBKDF2_HMAC((const char *)pw.data, (int)pw.len, salt, (int)salt_len,
                             (int)iter, EVP_sha256(), KEY_LEN, key) == 1;
}

kv_status_t kv_passwd_hash(kv_slice_t password, uint32_t iterations, char **out)
{
    if (!iterations) iterations = KV_PASSWD_ITERATIONS;
    if (iterations > KV_PASSWD_MAX_ITERATIONS) return KV_INVALID;
    uint8_t salt[SALT_LEN], key[KEY_LEN];
    if (RAND_bytes(salt, sizeof salt) != 1) {
        kv_errmsg_set("no random bytes for a salt");
        return KV_IO;
    }
    if (!derive(password, salt, sizeof salt, iterations, key)) return KV_IO;
    unsigned char s64[4 * ((SALT_LEN + 2) / 3) + 1], k64[4 * ((KEY_LEN + 2) / 3) + 1];
    EVP_EncodeBlock(s64, salt, sizeof salt);
    EVP_EncodeBlock(k64, key, sizeof key);
    size_t cap = strlen(PREFIX) + 12 + sizeof s64 + sizeof k64 + 4;
    char *h = kv_malloc(cap);
    snprintf(h, cap, PREFIX "%" PRIu32 "$%s$%s", iterations, (char *)s64, (char *)k64);
    OPENSSL_cleanse(key, sizeof key);
    *out = h;
    return KV_OK;
}

/* Decode base64 of exactly want bytes. */
static bool b64(const char *s, size_t len, uint8_t *out, size_t want)
{
    if (len != 4 * ((want + 2) / 3) || len > 128) return false;
    uint8_t tmp[128];
    int n = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)len);
    if (n < 0) return false;
    size_t pad = (s[len - 1] == '=') + (s[len - 2] == '=');
    if ((size_t)n - pad != want) return false;
    memcpy(out, tmp, want);
    return true;
}

kv_status_t kv_passwd_verify(kv_slice_t password, const char *hash)
{
    size_t pl = strlen(PREFIX);
    if (strncmp(hash, PREFIX, pl) != 0) return KV_INVALID;
    const char *p = hash + pl;
    char *end;
    if (*p < '1' || *p > '9') return KV_INVALID;
    unsigned long long iter = strtoull(p, &end, 10);
    if (*end != '$' || iter == 0 || iter > KV_PASSWD_MAX_ITERATIONS) return KV_INVALID;
    const char *salt = end + 1, *d = strchr(salt, '$');
    if (!d) return KV_INVALID;
    uint8_t s[SALT_LEN], k[KEY_LEN], got[KEY_LEN];
    if (!b64(salt, (size_t)(d - salt), s, SALT_LEN) || !b64(d + 1, strlen(d + 1), k, KEY_LEN))
        return KV_INVALID;
    if (!derive(password, s, SALT_LEN, (uint32_t)iter, got)) return KV_IO;
    int diff = CRYPTO_memcmp(got, k, KEY_LEN);
    OPENSSL_cleanse(got, sizeof got);
    return diff == 0 ? KV_OK : KV_DENIED;
}

kv_status_t kv_user_line_parse(const char *line, size_t len, kv_user_line_t *out)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
    if (i == len || line[i] == '#') return KV_NOTFOUND;
    const char *a = memchr(line + i, ':', len - i);
    const char *b = a ? memchr(a + 1, ':', (size_t)(line + len - a - 1)) : NULL;
    if (!a || !b) {
        kv_errmsg_set("expected name:role:hash");
        return KV_INVALID;
    }
    kv_user_line_t u = {.name = kv_slice(line + i, (size_t)(a - line - i)),
                        .hash = kv_slice(b + 1, (size_t)(line + len - b - 1))};
    if (!kv_user_name_ok((const char *)u.name.data, u.name.len)) {
        kv_errmsg_set("bad user name (1-64 of A-Z a-z 0-9 _ . @ -)");
        return KV_INVALID;
    }
    if (!kv_role_parse(a + 1, (size_t)(b - a - 1), &u.role)) {
        kv_errmsg_set("unknown role '%.*s' (read, readwrite or admin)",
                      (int)KV_MIN((size_t)(b - a - 1), 32), a + 1);
        return KV_INVALID;
    }
    if (u.hash.len == 0 || memchr(u.hash.data, ':', u.hash.len)) {
        kv_errmsg_set("bad hash field (a cairn user add hash, or - for certificate only)");
        return KV_INVALID;
    }
    *out = u;
    return KV_OK;
}
