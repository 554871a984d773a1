/*-------------------------------------------------------------------------
 *
 * jwt.c
 *	  The token format and its cryptography: base64url, compact JWS
 *	  (RFC 7515) parsing, HS256, RS256 and ES256 verification with
 *	  OpenSSL, reading the keys pg_ws.jwt_secret(_file) and
 *	  pg_ws.jwt_public_key_file, and the backend SQL function
 *	  pg_ws_sign_token().
 *
 * This file owns what a token is, not who may subscribe: it must not read
 * exp, nbf, aud, iss or events (auth.c decides with them), nor log
 * anything about a request.  It runs in the worker (verification) and in
 * backends (signing), so it must not touch libwebsockets.
 *
 * JSON is parsed with json-c in strict mode; json-c allocates with malloc,
 * so every json_object is put before anything here can raise an error.
 * Verification never raises one on a client's input: a bad token is a
 * status, not an error.  The header is parsed before the signature is
 * checked (it names the algorithm) and the claims only after.
 *
 * src/jwt.c
 *
 *-------------------------------------------------------------------------
 */
#include "jwt.h"

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "mb/pg_wchar.h"
#include "storage/fd.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

/*
 * PostgreSQL's SQL function json_object() and json-c's type of the same
 * name cannot both be declared: hide the function, which we do not call.
 */
#define json_object pg_json_object_unused
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#undef json_object

#include <json-c/json.h>

/* a token's JSON is flat; anything deeper is not one of ours */
#define JWT_JSON_MAX_DEPTH 16

/* a secret file larger than this is not a secret */
#define SECRET_FILE_MAX_LEN 4096

#define SHA256_LEN 32
#define ES256_SIG_LEN 64

/* ---------------------------------------------------------------- base64url */

static const char b64url_digits[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int
b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* base64url without padding (RFC 7515, 2), palloc'd and NUL-terminated */
char *
pgws_base64url_encode(const unsigned char *data, size_t len)
{
	char	   *out = palloc((len + 2) / 3 * 4 + 1);
	char	   *p = out;
	size_t		i;

	for (i = 0; i + 2 < len; i += 3)
	{
		uint32		v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];

		*p++ = b64url_digits[(v >> 18) & 63];
		*p++ = b64url_digits[(v >> 12) & 63];
		*p++ = b64url_digits[(v >> 6) & 63];
		*p++ = b64url_digits[v & 63];
	}
	if (len - i == 1)
	{
		uint32		v = data[i] << 16;

		*p++ = b64url_digits[(v >> 18) & 63];
		*p++ = b64url_digits[(v >> 12) & 63];
	}
	else if (len - i == 2)
	{
		uint32		v = (data[i] << 16) | (data[i + 1] << 8);

		*p++ = b64url_digits[(v >> 18) & 63];
		*p++ = b64url_digits[(v >> 12) & 63];
		*p++ = b64url_digits[(v >> 6) & 63];
	}
	*p = '\0';
	return out;
}

/*
 * Decode base64url without padding, palloc'd with a NUL after the *outlen
 * bytes; NULL when text is not canonical base64url: any character outside
 * the alphabet (padding included), an impossible length, or set bits in
 * the unused end of the last digit.  Being strict here means that a token
 * has exactly one spelling.
 */
unsigned char *
pgws_base64url_decode(const char *text, size_t len, size_t *outlen)
{
	unsigned char *out;
	size_t		n = 0;
	uint32		acc = 0;
	int			bits = 0;
	size_t		i;

	if (len % 4 == 1)
		return NULL;
	out = palloc(len / 4 * 3 + 3);
	for (i = 0; i < len; i++)
	{
		int			v = b64url_value((unsigned char) text[i]);

		if (v < 0)
		{
			pfree(out);
			return NULL;
		}
		acc = ((acc << 6) | v) & 0xFFFFFF;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			out[n++] = (acc >> bits) & 0xFF;
		}
	}
	if (bits > 0 && (acc & ((1 << bits) - 1)) != 0)
	{
		pfree(out);
		return NULL;
	}
	out[n] = '\0';
	*outlen = n;
	return out;
}

/* ------------------------------------------------------------------- JSON */

/*
 * Outside its strings, is this text made only of what standard JSON may
 * have there?  json-c's strict mode still takes single-quoted strings,
 * NaN and Infinity; this lexical look (not a parser: json-c parses) turns
 * those away, so that "malformed" means the same as for other JWT
 * libraries.
 */
static bool
json_text_is_standard(const char *buf, size_t len)
{
	bool		in_string = false;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		char		c = buf[i];

		if (in_string)
		{
			if (c == '\\')
				i++;			/* whatever is escaped, json-c checks it */
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (strchr("{}[],: \t\r\n0123456789+-.eE" "truefalsn", c) == NULL)
			return false;
	}
	return true;
}

/*
 * Parse a JSON object with json-c, strictly: standard JSON in valid UTF-8,
 * no trailing bytes, no NUL bytes.  NULL when it is anything else.  The
 * caller puts the result (json_object_put).
 */
struct json_object *
pgws_json_parse_object(const char *buf, size_t len)
{
	struct json_tokener *tok;
	struct json_object *obj;

	if (len == 0 || len > INT_MAX || memchr(buf, '\0', len) != NULL ||
		!json_text_is_standard(buf, len))
		return NULL;
	tok = json_tokener_new_ex(JWT_JSON_MAX_DEPTH);
	if (tok == NULL)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, buf, (int) len);
	if (obj != NULL &&
		(json_tokener_get_error(tok) != json_tokener_success ||
		 json_tokener_get_parse_end(tok) != len ||
		 !json_object_is_type(obj, json_type_object)))
	{
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	return obj;
}

/* is member key of obj a string equal to value (no embedded NUL)? */
static bool
string_member_is(struct json_object *obj, const char *key, const char *value)
{
	struct json_object *v;

	return json_object_object_get_ex(obj, key, &v) &&
		json_object_is_type(v, json_type_string) &&
		(size_t) json_object_get_string_len(v) == strlen(value) &&
		strcmp(json_object_get_string(v), value) == 0;
}

/* -------------------------------------------------------------- signatures */

static bool
verify_hs256(const PgWsJwtKeys *keys, const char *input, size_t input_len,
			 const unsigned char *sig, size_t sig_len)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;

	if (HMAC(EVP_sha256(), keys->secret, (int) keys->secret_len,
			 (const unsigned char *) input, input_len, mac, &mac_len) == NULL)
		return false;
	/* constant time: a timing difference would leak the MAC byte by byte */
	return mac_len == SHA256_LEN && sig_len == SHA256_LEN &&
		CRYPTO_memcmp(mac, sig, SHA256_LEN) == 0;
}

/* EVP verification of a DER (ES256) or PKCS#1 v1.5 (RS256) signature */
static bool
verify_evp(EVP_PKEY *key, const char *input, size_t input_len,
		   const unsigned char *sig, size_t sig_len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool		ok;

	if (ctx == NULL)
		return false;
	ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
		EVP_DigestVerify(ctx, sig, sig_len,
						 (const unsigned char *) input, input_len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

/*
 * JWS carries an ES256 signature as r||s, 32 bytes each (RFC 7518, 3.4);
 * OpenSSL verifies DER, so convert.
 */
static bool
verify_es256(EVP_PKEY *key, const char *input, size_t input_len,
			 const unsigned char *sig, size_t sig_len)
{
	ECDSA_SIG  *esig;
	BIGNUM	   *r;
	BIGNUM	   *s;
	unsigned char *der = NULL;
	int			der_len;
	bool		ok;

	if (sig_len != ES256_SIG_LEN)
		return false;
	esig = ECDSA_SIG_new();
	r = BN_bin2bn(sig, ES256_SIG_LEN / 2, NULL);
	s = BN_bin2bn(sig + ES256_SIG_LEN / 2, ES256_SIG_LEN / 2, NULL);
	if (esig == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(esig, r, s))
	{
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(esig);
		return false;
	}
	/* esig owns r and s now */
	der_len = i2d_ECDSA_SIG(esig, &der);
	ECDSA_SIG_free(esig);
	if (der_len <= 0)
		return false;
	ok = verify_evp(key, input, input_len, der, der_len);
	OPENSSL_free(der);
	return ok;
}

/* the JWS alg a public key verifies, or NULL */
static const char *
public_key_alg(EVP_PKEY *key)
{
	if (key == NULL)
		return NULL;
	if (EVP_PKEY_is_a(key, "RSA"))
		return "RS256";
	if (EVP_PKEY_is_a(key, "EC"))
		return "ES256";			/* the curve was checked when it was read */
	return NULL;
}

/* ------------------------------------------------------------ verification */

/*
 * Verify a compact JWS.  On PGWS_JWT_OK, *claims is its payload, a JSON
 * object the caller must json_object_put(); otherwise *claims is NULL.
 *
 * The algorithm named by the header must be one a configured key serves:
 * HS256 only with the secret, RS256 only with an RSA key, ES256 only with a
 * P-256 key.  That, and never the header, picks the key, so an HS256
 * token "signed" with the RSA public key's PEM as its HMAC key (the HS/RS
 * confusion) is checked against the secret, or refused when there is
 * none.  "none" and every other algorithm are refused, and so is a crit
 * header: it names extensions the token's meaning depends on, none of
 * which we implement (RFC 7515, 4.1.11).
 */
PgWsJwtStatus
pgws_jwt_verify(const char *token, size_t len, const PgWsJwtKeys *keys,
				struct json_object **claims)
{
	const char *dot1;
	const char *dot2;
	unsigned char *header_raw = NULL;
	unsigned char *payload_raw = NULL;
	unsigned char *sig = NULL;
	size_t		header_len;
	size_t		payload_len;
	size_t		sig_len;
	struct json_object *header = NULL;
	struct json_object *typ;
	const char *key_alg;
	bool		valid;
	PgWsJwtStatus status;

	*claims = NULL;
	if (len > PGWS_JWT_MAX_TOKEN_LEN)
		return PGWS_JWT_TOO_LONG;
	dot1 = memchr(token, '.', len);
	dot2 = dot1 ? memchr(dot1 + 1, '.', len - (dot1 + 1 - token)) : NULL;
	/* an empty signature is well-formed: alg none has one, refused below */
	if (dot1 == NULL || dot2 == NULL || dot1 == token || dot2 == dot1 + 1)
		return PGWS_JWT_MALFORMED;

	/* base64url refuses a third dot, so there are exactly three parts */
	header_raw = pgws_base64url_decode(token, dot1 - token, &header_len);
	payload_raw = pgws_base64url_decode(dot1 + 1, dot2 - dot1 - 1, &payload_len);
	sig = pgws_base64url_decode(dot2 + 1, token + len - dot2 - 1, &sig_len);
	if (header_raw == NULL || payload_raw == NULL || sig == NULL ||
		(header = pgws_json_parse_object((char *) header_raw, header_len)) == NULL)
	{
		status = PGWS_JWT_MALFORMED;
		goto done;
	}
	if (json_object_object_get_ex(header, "typ", &typ) &&
		!json_object_is_type(typ, json_type_string))
	{
		status = PGWS_JWT_MALFORMED;
		goto done;
	}

	key_alg = public_key_alg(keys->public_key);
	if (string_member_is(header, "alg", "HS256") && keys->secret != NULL)
		key_alg = "HS256";
	else if (key_alg == NULL || !string_member_is(header, "alg", key_alg))
	{
		status = PGWS_JWT_ALG_REFUSED;
		goto done;
	}
	if (json_object_object_get_ex(header, "crit", NULL))
	{
		status = PGWS_JWT_CRIT;
		goto done;
	}

	/* the signing input is the first two parts as sent, dot included */
	if (strcmp(key_alg, "HS256") == 0)
		valid = verify_hs256(keys, token, dot2 - token, sig, sig_len);
	else if (strcmp(key_alg, "ES256") == 0)
		valid = verify_es256(keys->public_key, token, dot2 - token, sig, sig_len);
	else
		valid = verify_evp(keys->public_key, token, dot2 - token, sig, sig_len);
	/* a rejected signature leaves errors that are no one else's business */
	ERR_clear_error();
	if (!valid)
	{
		status = PGWS_JWT_BAD_SIGNATURE;
		goto done;
	}

	*claims = pgws_json_parse_object((char *) payload_raw, payload_len);
	status = *claims ? PGWS_JWT_OK : PGWS_JWT_MALFORMED;

done:
	if (header)
		json_object_put(header);
	if (header_raw)
		pfree(header_raw);
	if (payload_raw)
		pfree(payload_raw);
	if (sig)
		pfree(sig);
	return status;
}

/* the reason a subscriber is told; short, and never quoting the token */
const char *
pgws_jwt_status_text(PgWsJwtStatus status)
{
	switch (status)
	{
		case PGWS_JWT_OK:
			return "token is valid";
		case PGWS_JWT_TOO_LONG:
			return "token is too long";
		case PGWS_JWT_MALFORMED:
			return "token is malformed";
		case PGWS_JWT_ALG_REFUSED:
			return "token algorithm is not accepted";
		case PGWS_JWT_CRIT:
			return "token has critical header parameters that are not supported";
		case PGWS_JWT_BAD_SIGNATURE:
			return "token signature is invalid";
	}
	return "token is invalid";
}

/* -------------------------------------------------------------------- keys */

/*
 * Read a whole small file into buf; false with errno set when it cannot be
 * read, or with errno = EFBIG when it is larger than max.
 */
static bool
read_small_file(const char *path, StringInfo buf, size_t max)
{
	int			fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	char		chunk[1024];
	ssize_t		n;
	int			save_errno;

	if (fd < 0)
		return false;
	while ((n = read(fd, chunk, sizeof(chunk))) != 0)
	{
		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			break;
		}
		if (buf->len + (size_t) n > max)
		{
			n = -1;
			errno = EFBIG;
			break;
		}
		appendBinaryStringInfo(buf, chunk, n);
	}
	save_errno = errno;
	explicit_bzero(chunk, sizeof(chunk));
	CloseTransientFile(fd);
	errno = save_errno;
	return n == 0;
}

/*
 * The configured HS256 secret into secret (reset first): the contents of
 * pg_ws.jwt_secret_file, without its trailing newline, when that is set,
 * else pg_ws.jwt_secret.  The file comes first because it is the way to
 * keep the secret out of the server log: the postmaster logs every
 * setting a reload changes, value included.  Wipe it with
 * pgws_jwt_forget_secret().
 */
PgWsSecretStatus
pgws_jwt_load_secret(StringInfo secret)
{
	pgws_jwt_forget_secret(secret);
	/* room for any secret at once: a repalloc would leave a copy behind */
	enlargeStringInfo(secret, Max(SECRET_FILE_MAX_LEN,
								  pgws_jwt_secret ? strlen(pgws_jwt_secret) : 0) + 1);
	if (pgws_jwt_secret_file != NULL && pgws_jwt_secret_file[0] != '\0')
	{
		if (!read_small_file(pgws_jwt_secret_file, secret, SECRET_FILE_MAX_LEN))
		{
			int			save_errno = errno;

			pgws_jwt_forget_secret(secret);
			errno = save_errno;
			return PGWS_SECRET_UNREADABLE;
		}
		while (secret->len > 0 &&
			   (secret->data[secret->len - 1] == '\n' ||
				secret->data[secret->len - 1] == '\r'))
			secret->data[--secret->len] = '\0';
	}
	else if (pgws_jwt_secret != NULL && pgws_jwt_secret[0] != '\0')
		appendStringInfoString(secret, pgws_jwt_secret);
	else
		return PGWS_SECRET_NONE;

	if (secret->len < PGWS_JWT_MIN_SECRET_LEN)
	{
		pgws_jwt_forget_secret(secret);
		return PGWS_SECRET_TOO_SHORT;
	}
	return PGWS_SECRET_OK;
}

/* wipe a secret's bytes, leaving it empty */
void
pgws_jwt_forget_secret(StringInfo secret)
{
	if (secret->data != NULL)
		explicit_bzero(secret->data, secret->maxlen);
	resetStringInfo(secret);
}

/*
 * Read pg_ws.jwt_public_key_file: a PEM public key (BEGIN PUBLIC KEY), RSA
 * of at least 2048 bits for RS256 or EC on P-256 for ES256.  Returns it
 * and sets *alg, or returns NULL and sets *why (palloc'd) to say what is
 * wrong with it.
 */
EVP_PKEY *
pgws_jwt_read_public_key(const char *path, const char **alg, char **why)
{
	FILE	   *fp;
	EVP_PKEY   *key;
	char		group[64];
	size_t		group_len = 0;

	*alg = NULL;
	*why = NULL;
	fp = AllocateFile(path, "r");
	if (fp == NULL)
	{
		*why = psprintf("could not open it: %m");
		return NULL;
	}
	key = PEM_read_PUBKEY(fp, NULL, NULL, NULL);
	FreeFile(fp);
	if (key == NULL)
	{
		unsigned long err = ERR_get_error();

		*why = psprintf("it holds no PEM public key (\"-----BEGIN PUBLIC KEY-----\"): %s",
						err ? ERR_reason_error_string(err) : "no PEM data");
		ERR_clear_error();
		return NULL;
	}

	if (EVP_PKEY_is_a(key, "RSA"))
	{
		if (EVP_PKEY_get_bits(key) < 2048)
			*why = psprintf("it is an RSA key of %d bits; RS256 needs at least 2048",
							EVP_PKEY_get_bits(key));
		else
			*alg = "RS256";
	}
	else if (EVP_PKEY_is_a(key, "EC"))
	{
		if (EVP_PKEY_get_group_name(key, group, sizeof(group), &group_len) != 1)
			strlcpy(group, "unknown", sizeof(group));
		if (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)
			*why = psprintf("it is an EC key on curve %s; ES256 needs P-256 (prime256v1)",
							group);
		else
			*alg = "ES256";
	}
	else
		*why = psprintf("it is a %s key; RS256 needs an RSA key and ES256 a P-256 EC key",
						EVP_PKEY_get0_type_name(key) ? EVP_PKEY_get0_type_name(key) : "unknown");
	ERR_clear_error();
	if (*alg == NULL)
	{
		EVP_PKEY_free(key);
		return NULL;
	}
	return key;
}

void
pgws_jwt_free_public_key(EVP_PKEY *key)
{
	EVP_PKEY_free(key);
}

/* ---------------------------------------------------------- SQL: signing */

/*
 * pg_ws_sign_token(claims jsonb, ttl interval) returns text
 *
 * An HS256 token for pg_ws signed with the configured secret, so that an
 * application backend that already talks to the database can mint its
 * subscribers' tokens without a JWT library or a copy of the secret.  iat
 * and exp (now + ttl) replace any in claims; iss and aud are added from
 * pg_ws.jwt_issuer and pg_ws.jwt_audience when those are set and claims
 * has none.  EXECUTE is granted to nobody: whoever may call this may
 * subscribe as anyone.
 *
 * The claims are merged as jsonb (a || b, b winning) so that numbers and
 * strings keep exactly the form the caller gave them; json-c is only for
 * reading tokens.
 */
PG_FUNCTION_INFO_V1(pg_ws_sign_token);

Datum
pg_ws_sign_token(PG_FUNCTION_ARGS)
{
	Jsonb	   *claims = PG_GETARG_JSONB_P(0);
	Interval   *ttl = PG_GETARG_INTERVAL_P(1);
	float8		ttl_s;
	int64		now;
	int64		exp;
	StringInfoData extra;
	StringInfoData secret;
	Jsonb	   *merged;
	char	   *payload;
	char	   *payload_utf8;
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	StringInfoData token;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	char	   *sig;
	PgWsSecretStatus st;

	if (!JB_ROOT_IS_OBJECT(claims) || JB_ROOT_IS_SCALAR(claims))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("token claims must be a JSON object"),
				 errdetail("pg_ws_sign_token() was given a JSON %s.",
						   JB_ROOT_IS_SCALAR(claims) ? "scalar" : "array")));

	ttl_s = DatumGetFloat8(DirectFunctionCall2(interval_part,
											   CStringGetTextDatum("epoch"),
											   IntervalPGetDatum(ttl)));
	now = (int64) floor((double) GetCurrentTimestamp() / USECS_PER_SEC) +
		(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
	if (!(ttl_s > 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("token lifetime must be positive"),
				 errdetail("pg_ws_sign_token() was given a ttl of %g seconds.", ttl_s)));
	/* NumericDate past the year 9999 helps nobody and JavaScript less */
	if (ttl_s > 253402300799.0 - (double) now)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("token lifetime is too long"),
				 errdetail("The token would expire after the year 9999.")));
	exp = now + (int64) ceil(ttl_s);

	initStringInfo(&extra);
	appendStringInfo(&extra, "{\"iat\": " INT64_FORMAT ", \"exp\": " INT64_FORMAT,
					 now, exp);
	if (pgws_jwt_issuer[0] != '\0' &&
		!DatumGetBool(DirectFunctionCall2(jsonb_exists, JsonbPGetDatum(claims),
										  CStringGetTextDatum("iss"))))
	{
		appendStringInfoString(&extra, ", \"iss\": ");
		escape_json(&extra, pgws_jwt_issuer);
	}
	if (pgws_jwt_audience[0] != '\0' &&
		!DatumGetBool(DirectFunctionCall2(jsonb_exists, JsonbPGetDatum(claims),
										  CStringGetTextDatum("aud"))))
	{
		appendStringInfoString(&extra, ", \"aud\": ");
		escape_json(&extra, pgws_jwt_audience);
	}
	appendStringInfoChar(&extra, '}');
	merged = DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
												JsonbPGetDatum(claims),
												DirectFunctionCall1(jsonb_in,
																	CStringGetDatum(extra.data))));
	payload = JsonbToCString(NULL, &merged->root, VARSIZE(merged));
	/* JWS is UTF-8 whatever the database encoding */
	payload_utf8 = pg_server_to_any(payload, strlen(payload), PG_UTF8);

	initStringInfo(&token);
	appendStringInfoString(&token,
						   pgws_base64url_encode((const unsigned char *) header,
												 sizeof(header) - 1));
	appendStringInfoChar(&token, '.');
	appendStringInfoString(&token,
						   pgws_base64url_encode((const unsigned char *) payload_utf8,
												 strlen(payload_utf8)));

	initStringInfo(&secret);
	st = pgws_jwt_load_secret(&secret);
	switch (st)
	{
		case PGWS_SECRET_OK:
			break;
		case PGWS_SECRET_NONE:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pg_ws has no secret to sign tokens with"),
					 errhint("Set pg_ws.jwt_secret_file (or pg_ws.jwt_secret) in postgresql.conf and reload the configuration.")));
			break;
		case PGWS_SECRET_UNREADABLE:
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read pg_ws.jwt_secret_file \"%s\": %m",
							pgws_jwt_secret_file)));
			break;
		case PGWS_SECRET_TOO_SHORT:
			/* only the file can be: pg_ws.jwt_secret's check hook refuses it */
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pg_ws.jwt_secret_file \"%s\" holds fewer than %d bytes",
							pgws_jwt_secret_file, PGWS_JWT_MIN_SECRET_LEN),
					 errhint("Write a longer secret to it, for example with \"openssl rand -base64 48\".")));
			break;
	}
	if (HMAC(EVP_sha256(), secret.data, secret.len,
			 (const unsigned char *) token.data, token.len, mac, &mac_len) == NULL)
	{
		pgws_jwt_forget_secret(&secret);
		ERR_clear_error();
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("pg_ws could not compute the token's HMAC")));
	}
	pgws_jwt_forget_secret(&secret);

	sig = pgws_base64url_encode(mac, mac_len);
	explicit_bzero(mac, sizeof(mac));
	appendStringInfoChar(&token, '.');
	appendStringInfoString(&token, sig);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(token.data, token.len));
}
