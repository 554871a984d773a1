/*-------------------------------------------------------------------------
 *
 * tls.c
 *	  wss:// for the pg_ws listener: which certificate, private key and
 *	  chain the worker serves, loaded at start and again on every reload,
 *	  and the OpenSSL settings of the server's SSL_CTX.
 *
 * This file owns the TLS settings (pg_ws.ssl, pg_ws.ssl_cert_file,
 * pg_ws.ssl_key_file and pg_ws.ssl_ca_file, or PostgreSQL's own
 * ssl_cert_file and ssl_key_file), the checks on those files, the
 * certificate material in use and how the SSL_CTX is configured.  It must
 * not know libwebsockets, sockets or HTTP: worker.c creates the TLS vhost,
 * hands the SSL_CTX libwebsockets made for it to pgws_tls_setup_ctx(), and
 * asks pgws_tls_state() whether a new connection gets wss://, plain ws://
 * or nothing.  It runs only in the worker.
 *
 * Renewal without dropping anyone.  The SSL_CTX is created once, by
 * libwebsockets, and lives as long as the worker.  Every handshake asks
 * our certificate callback for its certificate, key and chain, and gets
 * the material loaded last; connections already established keep theirs.
 * So a reload after certbot has replaced the files only has to load them
 * again.  New material replaces the old only once it has loaded completely
 * and passed every check (the key matches the certificate, OpenSSL accepts
 * both at its security level): if the new files are bad, we say why and
 * keep serving what we had.
 *
 * Never plain when TLS was asked for.  Once the settings ask for TLS,
 * pgws_tls_state() answers PGWS_TLS_READY (with material loaded now or
 * kept from before) or PGWS_TLS_UNUSABLE, and then the worker refuses
 * connections rather than serve them as ws://.
 *
 * src/tls.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_ws.h"

#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "storage/fd.h"
#include "utils/guc.h"
#include "utils/memutils.h"

/* PEM files larger than this are certainly not a certificate chain or key */
#define MAX_PEM_FILE_SIZE	(1024 * 1024)

/* what a handshake is given: the server certificate, its key, the chain */
typedef struct TlsMaterial
{
	X509	   *cert;
	EVP_PKEY   *key;
	STACK_OF(X509) *chain;
} TlsMaterial;

/* the files the settings name, and which settings named them */
typedef struct TlsFiles
{
	const char *cert;
	const char *key;
	const char *ca;				/* NULL: no extra chain file */
	const char *origin;			/* for the log */
} TlsFiles;

static PgWsTlsState tls_state = PGWS_TLS_OFF;

/* what new handshakes get; cert == NULL when nothing usable is loaded */
static TlsMaterial current = {NULL, NULL, NULL};

/*
 * The TLS vhost's SSL_CTX, once libwebsockets has made it.  We hold a
 * reference: should libwebsockets free it (a vhost whose creation fails
 * after our callback), this pointer stays valid.
 */
static SSL_CTX *server_ctx = NULL;

/*
 * The reason for the last OpenSSL error, as PostgreSQL's SSLerrmessage()
 * gives it, and the error queue cleared.
 */
static const char *
tls_error_message(void)
{
	static char buf[48];
	unsigned long ecode = ERR_get_error();
	const char *reason;

	ERR_clear_error();
	if (ecode == 0)
		return "no SSL error reported";
	reason = ERR_reason_error_string(ecode);
	if (reason != NULL)
		return reason;
	snprintf(buf, sizeof(buf), "SSL error code %lu", ecode);
	return buf;
}

/* never prompt for a passphrase: note that one was asked for, and fail */
static int
refuse_passphrase(char *buf, int size, int rwflag, void *userdata)
{
	*(bool *) userdata = true;
	return -1;
}

static void
material_free(TlsMaterial *m)
{
	X509_free(m->cert);
	EVP_PKEY_free(m->key);
	sk_X509_pop_free(m->chain, X509_free);
	m->cert = NULL;
	m->key = NULL;
	m->chain = NULL;
}

/* do a and b send the same certificates?  (the key follows the certificate) */
static bool
material_same(const TlsMaterial *a, const TlsMaterial *b)
{
	int			i;

	if (a->cert == NULL || b->cert == NULL || X509_cmp(a->cert, b->cert) != 0 ||
		sk_X509_num(a->chain) != sk_X509_num(b->chain))
		return false;
	for (i = 0; i < sk_X509_num(a->chain); i++)
		if (X509_cmp(sk_X509_value(a->chain, i), sk_X509_value(b->chain, i)) != 0)
			return false;
	return true;
}

/*
 * The key file's owner and mode, checked as PostgreSQL checks its own
 * (check_ssl_key_file_permissions() in be-secure-common.c), on the
 * descriptor we are about to read so that a file swapped in between cannot
 * slip past.
 */
static bool
key_file_permissions_ok(int fd, const char *path)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not access private key file \"%s\": %m", path)));
		return false;
	}
	if (!S_ISREG(st.st_mode))
	{
		ereport(LOG,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("private key file \"%s\" is not a regular file", path)));
		return false;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0)
	{
		ereport(LOG,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("private key file \"%s\" must be owned by the database user or root",
						path)));
		return false;
	}
	if ((st.st_uid == geteuid() && (st.st_mode & (S_IRWXG | S_IRWXO))) ||
		(st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))))
	{
		ereport(LOG,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("private key file \"%s\" has group or world access", path),
				 errdetail("File must have permissions u=rw (0600) or less if owned by the database user, or permissions u=rw,g=r (0640) or less if owned by root.")));
		return false;
	}
	return true;
}

/*
 * Read a whole PEM file into buf.  what names the kind of file in
 * messages; a private key file has its permissions checked first.
 */
static bool
read_pem_file(const char *path, const char *what, bool is_key, StringInfo buf)
{
	struct stat st;
	int			fd;
	bool		ok = false;

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not open %s file \"%s\": %m", what, path)));
		return false;
	}
	if (is_key && !key_file_permissions_ok(fd, path))
		goto done;
	if (fstat(fd, &st) != 0)
	{
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not access %s file \"%s\": %m", what, path)));
		goto done;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > MAX_PEM_FILE_SIZE)
	{
		ereport(LOG,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s file \"%s\" is not a regular file of at most %d bytes",
						what, path, MAX_PEM_FILE_SIZE)));
		goto done;
	}
	for (;;)
	{
		ssize_t		n;

		enlargeStringInfo(buf, 4096);
		n = read(fd, buf->data + buf->len, buf->maxlen - buf->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not read %s file \"%s\": %m", what, path)));
			goto done;
		}
		if (n == 0)
			break;
		buf->len += n;
		buf->data[buf->len] = '\0';
		if (buf->len > MAX_PEM_FILE_SIZE)
		{
			ereport(LOG,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("%s file \"%s\" is not a regular file of at most %d bytes",
							what, path, MAX_PEM_FILE_SIZE)));
			goto done;
		}
	}
	ok = true;
done:
	CloseTransientFile(fd);
	return ok;
}

/* clear what a file left in memory (it may be a private key) */
static void
forget_file(StringInfo buf)
{
	explicit_bzero(buf->data, buf->maxlen);
	pfree(buf->data);
}

/*
 * Append every certificate of a PEM buffer to chain; first, if not NULL,
 * receives the first one instead.  Fails on anything that is not a
 * certificate, and on a file with none.
 */
static bool
parse_certificates(StringInfo buf, const char *path, const char *what,
				   X509 **first, STACK_OF(X509) *chain)
{
	BIO		   *bio = BIO_new_mem_buf(buf->data, buf->len);
	bool		asked = false;
	int			count = 0;
	bool		ok = true;

	if (bio == NULL)
	{
		ereport(LOG,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not load %s file \"%s\": %s",
						what, path, tls_error_message())));
		return false;
	}
	ERR_clear_error();
	for (;;)
	{
		X509	   *x;
		unsigned long ecode;

		/* the server certificate may carry trust settings, as OpenSSL allows */
		if (count == 0 && first != NULL)
			x = PEM_read_bio_X509_AUX(bio, NULL, refuse_passphrase, &asked);
		else
			x = PEM_read_bio_X509(bio, NULL, refuse_passphrase, &asked);
		if (x == NULL)
		{
			/* "no start line" after the last certificate is the end */
			ecode = ERR_peek_last_error();
			if (count > 0 && ERR_GET_LIB(ecode) == ERR_LIB_PEM &&
				ERR_GET_REASON(ecode) == PEM_R_NO_START_LINE)
				ERR_clear_error();
			else
			{
				ereport(LOG,
						(errcode(ERRCODE_CONFIG_FILE_ERROR),
						 errmsg("could not load %s file \"%s\": %s",
								what, path,
								count == 0 && ecode == 0 ? "no certificate in it" :
								tls_error_message()),
						 count > 0 ?
						 errdetail("It has %d certificate(s), then something that is not a PEM certificate.",
								   count) : 0));
				ok = false;
			}
			break;
		}
		if (count == 0 && first != NULL)
			*first = x;
		else if (!sk_X509_push(chain, x))
		{
			X509_free(x);
			ereport(LOG,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not load %s file \"%s\": out of memory",
							what, path)));
			ok = false;
			break;
		}
		count++;
	}
	BIO_free(bio);
	return ok;
}

/* the private key of a PEM buffer; passphrase-protected keys are refused */
static EVP_PKEY *
parse_private_key(StringInfo buf, const char *path)
{
	BIO		   *bio = BIO_new_mem_buf(buf->data, buf->len);
	bool		asked = false;
	EVP_PKEY   *key;

	if (bio == NULL)
	{
		ereport(LOG,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not load private key file \"%s\": %s",
						path, tls_error_message())));
		return NULL;
	}
	ERR_clear_error();
	key = PEM_read_bio_PrivateKey(bio, NULL, refuse_passphrase, &asked);
	BIO_free(bio);
	if (key == NULL && asked)
	{
		ERR_clear_error();
		ereport(LOG,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("private key file \"%s\" requires a passphrase", path),
				 errdetail("pg_ws cannot ask for one."),
				 errhint("Use a key file without a passphrase, readable only by the database user.")));
	}
	else if (key == NULL)
		ereport(LOG,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not load private key file \"%s\": %s",
						path, tls_error_message())));
	return key;
}

/*
 * The settings OpenSSL itself must enforce on our SSL_CTX, whatever the
 * system's openssl.cnf says: TLS 1.2 or later, no compression (CRIME), no
 * renegotiation (TLS 1.3 has none; in 1.2 it only costs us CPU).
 * libwebsockets already turns off compression and prefers the server's
 * cipher order; we say it again so that this does not depend on it.
 */
static bool
configure_ctx(SSL_CTX *ctx)
{
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
	{
		ereport(LOG,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("pg_ws could not require TLS 1.2 or later: %s",
						tls_error_message())));
		return false;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
						SSL_OP_NO_RENEGOTIATION |
						SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_clear_options(ctx, SSL_OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION);
#ifdef SSL_OP_ALLOW_CLIENT_RENEGOTIATION
	SSL_CTX_clear_options(ctx, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
#endif
	return true;
}

/*
 * Would OpenSSL serve this material?  A scratch SSL_CTX configured like
 * ours checks what the real one would at a handshake: that the key
 * matches and that key and chain pass the security level.
 */
static bool
material_usable(const TlsMaterial *m, const TlsFiles *files)
{
	SSL_CTX    *scratch;
	bool		ok;

	ERR_clear_error();
	scratch = SSL_CTX_new(TLS_server_method());
	if (scratch == NULL || !configure_ctx(scratch))
	{
		ereport(LOG,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("pg_ws could not check server certificate file \"%s\": %s",
						files->cert, tls_error_message())));
		SSL_CTX_free(scratch);
		return false;
	}
	ok = SSL_CTX_use_cert_and_key(scratch, m->cert, m->key, m->chain, 1) == 1;
	if (!ok)
		ereport(LOG,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("pg_ws cannot serve server certificate file \"%s\" with private key file \"%s\": %s",
						files->cert, files->key, tls_error_message()),
				 errhint("OpenSSL refuses the certificate, its key or a certificate of its chain, for example a key too small or a weak signature for its security level.")));
	SSL_CTX_free(scratch);
	return ok;
}

/* read and check everything the files name; on failure, m is left empty */
static bool
load_material(const TlsFiles *files, TlsMaterial *m)
{
	StringInfoData buf;
	bool		ok;

	m->chain = sk_X509_new_null();
	if (m->chain == NULL)
	{
		ereport(LOG,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
		return false;
	}

	/* the server certificate, and whatever chain follows it (fullchain.pem) */
	initStringInfo(&buf);
	ok = read_pem_file(files->cert, "server certificate", false, &buf) &&
		parse_certificates(&buf, files->cert, "server certificate",
						   &m->cert, m->chain);
	forget_file(&buf);

	/* more of the chain, sent after what the certificate file holds */
	if (ok && files->ca != NULL)
	{
		initStringInfo(&buf);
		ok = read_pem_file(files->ca, "certificate chain", false, &buf) &&
			parse_certificates(&buf, files->ca, "certificate chain",
							   NULL, m->chain);
		forget_file(&buf);
	}

	if (ok)
	{
		initStringInfo(&buf);
		ok = read_pem_file(files->key, "private key", true, &buf) &&
			(m->key = parse_private_key(&buf, files->key)) != NULL;
		forget_file(&buf);
	}

	if (ok && X509_check_private_key(m->cert, m->key) != 1)
	{
		ERR_clear_error();
		ereport(LOG,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("private key file \"%s\" does not match server certificate file \"%s\"",
						files->key, files->cert),
				 errhint("Replace both files before reloading; certbot's privkey.pem and fullchain.pem belong together.")));
		ok = false;
	}

	if (ok)
		ok = material_usable(m, files);
	if (!ok)
		material_free(m);
	return ok;
}

/*
 * Which files the settings name.  Returns false when TLS is off; when it
 * is on but the settings are incomplete, returns true with files->cert set
 * to NULL after saying why.
 */
static bool
choose_files(TlsFiles *files)
{
	bool		cert_set = pgws_ssl_cert_file[0] != '\0';
	bool		key_set = pgws_ssl_key_file[0] != '\0';

	memset(files, 0, sizeof(*files));
	if (!pgws_ssl && !cert_set && !key_set)
		return false;

	files->ca = pgws_ssl_ca_file[0] != '\0' ? pgws_ssl_ca_file : NULL;
	if (cert_set && key_set)
	{
		files->cert = pgws_ssl_cert_file;
		files->key = pgws_ssl_key_file;
		files->origin = "pg_ws.ssl_cert_file and pg_ws.ssl_key_file";
	}
	else if (cert_set || key_set)
	{
		ereport(LOG,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pg_ws.%s is set but pg_ws.%s is not",
						cert_set ? "ssl_cert_file" : "ssl_key_file",
						cert_set ? "ssl_key_file" : "ssl_cert_file"),
				 errhint("Set both, or neither and pg_ws.ssl = on to use PostgreSQL's ssl_cert_file and ssl_key_file.")));
	}
	else
	{
		/* pg_ws.ssl = on: PostgreSQL's own files, relative to the data directory */
		const char *cert = GetConfigOption("ssl_cert_file", false, false);
		const char *key = GetConfigOption("ssl_key_file", false, false);

		if (cert == NULL || cert[0] == '\0' || key == NULL || key[0] == '\0')
			ereport(LOG,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("pg_ws.ssl is on but PostgreSQL's ssl_cert_file or ssl_key_file is empty"),
					 errhint("Set them, or pg_ws.ssl_cert_file and pg_ws.ssl_key_file.")));
		else
		{
			files->cert = pstrdup(cert);
			files->key = pstrdup(key);
			files->origin = "PostgreSQL's ssl_cert_file and ssl_key_file (pg_ws.ssl is on)";
		}
	}
	return true;
}

/* subject, serial and expiry of a certificate: public, and what an
 * operator compares after a renewal */
static char *
describe_certificate(X509 *cert)
{
	BIO		   *bio = BIO_new(BIO_s_mem());
	ASN1_INTEGER *serial = X509_get_serialNumber(cert);
	BIGNUM	   *bn = ASN1_INTEGER_to_BN(serial, NULL);
	char	   *hex = bn ? BN_bn2hex(bn) : NULL;
	char	   *data;
	long		len;
	char	   *result;

	if (bio == NULL)
		return pstrdup("?");
	BIO_puts(bio, "subject \"");
	X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
	BIO_puts(bio, "\", serial ");
	BIO_puts(bio, hex ? hex : "?");
	BIO_puts(bio, ", not after ");
	ASN1_TIME_print(bio, X509_get0_notAfter(cert));
	len = BIO_get_mem_data(bio, &data);
	result = pnstrdup(data, len);
	BIO_free(bio);
	OPENSSL_free(hex);
	BN_free(bn);
	ERR_clear_error();
	return result;
}

/* pgws_tls_configure(), in its own memory context */
static void
configure(void)
{
	TlsFiles	files;
	TlsMaterial m = {NULL, NULL, NULL};
	PgWsTlsState old_state = tls_state;

	if (!choose_files(&files))
	{
		if (old_state != PGWS_TLS_OFF)
			ereport(LOG,
					(errmsg("pg_ws serves new connections as plain ws://: TLS is off"),
					 errdetail("pg_ws.ssl is off and pg_ws.ssl_cert_file and pg_ws.ssl_key_file are empty; connections made before keep their TLS.")));
		material_free(&current);
		tls_state = PGWS_TLS_OFF;
		return;
	}

	if (files.cert != NULL && load_material(&files, &m))
	{
		bool		changed = old_state != PGWS_TLS_READY ||
			!material_same(&current, &m);

		material_free(&current);
		current = m;
		tls_state = PGWS_TLS_READY;

		/* lws looks at the SSL_CTX's own certificate for its expiry checks */
		if (server_ctx != NULL &&
			SSL_CTX_use_cert_and_key(server_ctx, current.cert, current.key,
									 current.chain, 1) != 1)
			ereport(LOG,
					(errmsg_internal("pg_ws could not update the SSL_CTX's default certificate: %s",
									 tls_error_message())));

		if (changed)
		{
			char	   *desc = describe_certificate(current.cert);

			ereport(LOG,
					(errmsg("pg_ws serves new connections as wss:// with server certificate file \"%s\"",
							files.cert),
					 errdetail("Certificate %s, sent with %d chain certificate(s); files named by %s.",
							   desc, sk_X509_num(current.chain), files.origin)));
			pfree(desc);
		}
	}
	else if (current.cert != NULL)
	{
		char	   *desc = describe_certificate(current.cert);

		ereport(LOG,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("pg_ws keeps serving wss:// with the certificate it loaded before"),
				 errdetail("The TLS settings or files are not usable (see above); new connections still get certificate %s.",
						   desc),
				 errhint("Fix the files and reload the configuration.")));
		pfree(desc);
		tls_state = PGWS_TLS_READY;
	}
	else
	{
		ereport(LOG,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("pg_ws is refusing connections: TLS is configured but not usable"),
				 errdetail("pg_ws never serves plain ws:// when TLS is asked for; the reason is logged above."),
				 errhint("Fix the TLS settings or files and reload the configuration.")));
		tls_state = PGWS_TLS_UNUSABLE;
	}
}

/*
 * Read the TLS settings and load the files they name: at the worker's
 * start and after every reload.  Says in the log what changed and, on any
 * problem, which file and why.  Returns the new state.
 */
PgWsTlsState
pgws_tls_configure(void)
{
	MemoryContext cxt;
	MemoryContext old_cxt;

	/* paths, file contents and messages: nothing outlives the reload */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_ws TLS reload",
								ALLOCSET_DEFAULT_SIZES);
	old_cxt = MemoryContextSwitchTo(cxt);
	configure();
	MemoryContextSwitchTo(old_cxt);
	MemoryContextDelete(cxt);
	return tls_state;
}

PgWsTlsState
pgws_tls_state(void)
{
	return tls_state;
}

/*
 * The certificate callback: each handshake gets exactly the material
 * loaded last.  Clearing first matters when a renewal changes the key
 * type: the SSL starts with a copy of the SSL_CTX's certificates, and an
 * RSA certificate left in its slot could still be chosen next to a new
 * ECDSA one.
 */
static int
tls_cert_cb(SSL *ssl, void *arg)
{
	if (current.cert == NULL)
		return 0;				/* fails the handshake */
	SSL_certs_clear(ssl);
	if (SSL_use_cert_and_key(ssl, current.cert, current.key, current.chain, 1) != 1)
	{
		ERR_clear_error();
		return 0;
	}
	return 1;
}

/*
 * Configure the SSL_CTX of the TLS vhost, which libwebsockets has just
 * created.  Called once, from the worker's libwebsockets callback.
 */
bool
pgws_tls_setup_ctx(struct ssl_ctx_st *ctx)
{
	if (!configure_ctx(ctx))
		return false;

	/*
	 * libwebsockets' SNI callback would move the handshake to the SSL_CTX
	 * of the vhost named like the requested server, or else of the first
	 * vhost: one of the worker's others, which have none.  (OpenSSL 3 then
	 * keeps ours, but we need not rely on that.)  We serve one certificate.
	 */
	SSL_CTX_set_tlsext_servername_callback(ctx, NULL);
	SSL_CTX_set_cert_cb(ctx, tls_cert_cb, NULL);

	/* the certificate libwebsockets checks for expiry, once a day */
	if (current.cert != NULL &&
		SSL_CTX_use_cert_and_key(ctx, current.cert, current.key,
								 current.chain, 1) != 1)
	{
		ereport(LOG,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("pg_ws could not set up its TLS context: %s",
						tls_error_message())));
		return false;
	}
	SSL_CTX_up_ref(ctx);
	SSL_CTX_free(server_ctx);
	server_ctx = ctx;
	return true;
}
