/*-------------------------------------------------------------------------
 *
 * jwt.h
 *	  The token format of pg_ws (compact JWS, RFC 7515/7519) and its
 *	  cryptography: declarations shared by jwt.c, auth.c and the backend
 *	  function pg_ws_sign_token().
 *
 * Nothing here decides who may subscribe; that is auth.c.  OpenSSL and
 * json-c types are only forward-declared, so that including this header
 * pulls in neither library.
 *
 * src/jwt.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_WS_JWT_H
#define PG_WS_JWT_H

#include "pg_ws.h"

struct evp_pkey_st;				/* OpenSSL's EVP_PKEY */
struct json_object;				/* json-c */

/* an HS256 secret shorter than this is refused (RFC 7518, 3.2) */
#define PGWS_JWT_MIN_SECRET_LEN 32

/* longer tokens are refused before anything is decoded */
#define PGWS_JWT_MAX_TOKEN_LEN	8192

/* what the verification keys are; any may be absent */
typedef struct PgWsJwtKeys
{
	const unsigned char *secret;	/* HS256, NULL when none */
	size_t		secret_len;
	struct evp_pkey_st *public_key; /* RSA (RS256) or P-256 EC (ES256) */
} PgWsJwtKeys;

/* the outcome of pgws_jwt_verify(); pgws_jwt_status_text() names it */
typedef enum PgWsJwtStatus
{
	PGWS_JWT_OK,
	PGWS_JWT_TOO_LONG,			/* longer than PGWS_JWT_MAX_TOKEN_LEN */
	PGWS_JWT_MALFORMED,			/* not header.payload.signature of base64url
								 * JSON objects */
	PGWS_JWT_ALG_REFUSED,		/* alg none, unknown, or no key for it */
	PGWS_JWT_CRIT,				/* a "crit" header: extensions we lack */
	PGWS_JWT_BAD_SIGNATURE
} PgWsJwtStatus;

extern PgWsJwtStatus pgws_jwt_verify(const char *token, size_t len,
									 const PgWsJwtKeys *keys,
									 struct json_object **claims);
extern const char *pgws_jwt_status_text(PgWsJwtStatus status);

extern struct json_object *pgws_json_parse_object(const char *buf, size_t len);

extern char *pgws_base64url_encode(const unsigned char *data, size_t len);
extern unsigned char *pgws_base64url_decode(const char *text, size_t len,
											size_t *outlen);

/* where the HS256 secret comes from, and whether it could be read */
typedef enum PgWsSecretStatus
{
	PGWS_SECRET_OK,
	PGWS_SECRET_NONE,			/* neither setting is set */
	PGWS_SECRET_UNREADABLE,		/* the file could not be read; errno set */
	PGWS_SECRET_TOO_SHORT		/* fewer than PGWS_JWT_MIN_SECRET_LEN bytes */
} PgWsSecretStatus;

extern PgWsSecretStatus pgws_jwt_load_secret(StringInfo secret);
extern void pgws_jwt_forget_secret(StringInfo secret);

/* the public key of pg_ws.jwt_public_key_file, or NULL and *why */
extern struct evp_pkey_st *pgws_jwt_read_public_key(const char *path,
													const char **alg,
													char **why);
extern void pgws_jwt_free_public_key(struct evp_pkey_st *key);

#endif							/* PG_WS_JWT_H */
