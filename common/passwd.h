/* passwd.h -- Cairn's users file and salted, slow password hashes.
 *
 * USERS FILE  one user per line, "name:role:hash"; blank lines and lines
 *   starting with '#' are ignored. name: 1..64 of [A-Za-z0-9_.@-]; role:
 *   read | readwrite | admin; hash: a kv_passwd_hash string, or "-" for a
 *   user who may only log in with a client certificate (whose common name
 *   is the user name). `cairn user add|del|list` edits it; cairnd reads it
 *   (users_file) and reads it again when it changes.
 * HASH  "pbkdf2-sha256$ITERATIONS$SALT$KEY": PBKDF2-HMAC-SHA256 (OpenSSL),
 *   a 16-byte random salt and a 32-byte key, both base64. The iteration
 *   count is kept in the string, so it can be raised for new entries
 *   without breaking old ones.
 * THREADING  Any thread; no shared state.
 */
#ifndef CAIRN_PASSWD_H
#define CAIRN_PASSWD_H

#include "kv.h"

#define KV_PASSWD_ITERATIONS 100000u /* the default for new entries */
#define KV_PASSWD_MAX_ITERATIONS 10000000u
#define KV_USER_MAX 64

typedef enum {
    KV_ROLE_NONE = 0,
    KV_ROLE_READ = 1,      /* GET, INFO, RING, LOCAL_GET */
    KV_ROLE_READWRITE = 2, /* and PUT, DELETE */
    KV_ROLE_ADMIN = 3,     /* and ADMIN (decommission, removenode, cleanup, repair) */
} kv_role_t;

/* "read", "readwrite", "admin" ("none" for KV_ROLE_NONE). */
const char *kv_role_str(kv_role_t r);
bool kv_role_parse(const char *s, size_t len, kv_role_t *out);
bool kv_user_name_ok(const char *s, size_t len);

/* A new hash string for password (kv_malloc'd; kv_free it). iterations 0
 * means KV_PASSWD_ITERATIONS. KV_IO when no random salt could be had. */
kv_status_t kv_passwd_hash(kv_slice_t password, uint32_t iterations, char **out);
/* KV_OK when password matches hash; KV_DENIED when it does not;
 * KV_INVALID when hash is not a hash this code makes (or is "-"). */
kv_status_t kv_passwd_verify(kv_slice_t password, const char *hash);

/* One parsed line of a users file: pointers into the line. */
typedef struct kv_user_line {
    kv_slice_t name, hash;
    kv_role_t role;
} kv_user_line_t;

/* Parse a line (without its newline). KV_NOTFOUND for a blank or comment
 * line; KV_INVALID (kv_errmsg says what) for a malformed one. */
kv_status_t kv_user_line_parse(const char *line, size_t len, kv_user_line_t *out);

#endif /* CAIRN_PASSWD_H */
