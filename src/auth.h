/*-------------------------------------------------------------------------
 *
 * auth.h
 *	  Who may subscribe: the interface between the worker's transport and
 *	  auth.c, which decides with pg_ws.auth, the token settings and
 *	  pg_ws.allowed_origins.
 *
 * Worker-side only, and transport-agnostic: the transport hands over the
 * request's headers as strings and gets back a status, a reason it may
 * send and log, and a grant to keep with the subscriber.  Nothing here
 * knows sockets, HTTP parsing or libwebsockets.
 *
 * What the transport must do:
 *	- at worker start and after every SIGHUP's ProcessConfigFile, call
 *	  pgws_auth_reload();
 *	- on an upgrade request to /ws/, fill a PgWsAuthRequest and call
 *	  pgws_auth_upgrade(); on non-zero, answer with that status (401 with
 *	  a WWW-Authenticate header from pgws_auth_challenge(), or 403) and the
 *	  reason, and do not upgrade; on 0 keep the grant with the subscriber;
 *	- before answering any other request that serves something (a page,
 *	  figures), ask pgws_auth_anonymous_host() and answer 403 with the
 *	  reason when it says no;
 *	- send a subscriber only the events pgws_grant_allows() for its grant;
 *	- call pgws_auth_upgrade() and pgws_auth_message() in the memory
 *	  context the grant is to live in (the connection's): a grant's event
 *	  patterns are allocated there, and pgws_auth_message() frees those of
 *	  the grant it replaces;
 *	- once pgws_grant_expired(grant, time(NULL)), send nothing more and
 *	  close with code 4001 (WS_CLOSE_TOKEN) and "token expired";
 *	- hand each complete text message from a subscriber to
 *	  pgws_auth_message(); on AUTH_MSG_REJECTED close with code 4001
 *	  and the reason; on AUTH_MSG_ACCEPTED the new grant applies from
 *	  then on, its expiry included; AUTH_MSG_NOT_AUTH is not its business;
 *	- after a reload, close with code 4001 and the reason every
 *	  subscriber whose grant pgws_auth_grant_current() refuses (pg_ws.auth
 *	  became jwt while it was connected without a token);
 *	- rate-limit its log lines about refusals; auth.c never logs per
 *	  request, and no reason ever contains a token or the secret.
 *
 * src/auth.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_WS_AUTH_H
#define PG_WS_AUTH_H

#include "pg_ws.h"

/* what a request carries; NULL when absent */
typedef struct PgWsAuthRequest
{
	const char *authorization;	/* Authorization header value */
	const char *cookie;			/* Cookie header(s), joined with "; " */
	const char *query;			/* the request target's query string
								 * without '?', still percent-encoded */
	const char *origin;			/* Origin header */
	const char *host;			/* the authority the request is for, as
								 * host[:port] (Host, or an absolute-form
								 * target's), already checked for syntax;
								 * NULL when it names none (HTTP/1.0) */
	bool		listen_names_are_loopback;	/* the names in
											 * pg_ws.listen_addresses resolve
											 * to loopback addresses only */
} PgWsAuthRequest;

/*
 * One entry of a token's filters claim: the events of pattern (a name, a
 * prefix ending in '*', or "*") are allowed only when filter holds for
 * their row (filter.c).
 */
typedef struct PgWsGrantFilter
{
	char	   *pattern;
	size_t		stem_len;		/* pattern without its '*' */
	bool		prefix;			/* it ended with '*' */
	char	   *text;			/* the filter as the claim wrote it */
	struct PgWsValueFilter *filter;
} PgWsGrantFilter;

/* who a subscriber is and what it may receive */
typedef struct PgWsGrant
{
	bool		authenticated;	/* a token was verified */
	int64		expires_at;		/* Unix seconds after which the connection
								 * must close (exp + leeway); 0 = never */
	PgWsEventSet events;		/* the events claim's patterns; every event
								 * without one, or with "*" */
	int			nfilters;		/* the filters claim's entries; 0 without */
	PgWsGrantFilter *filters;	/* in filters_cxt */
	MemoryContext filters_cxt;	/* of their own, so that a grant replaced
								 * by an auth message frees them */
	char		subject[64];	/* "sub" claim, truncated, control characters
								 * replaced by '?'; "" when none */
} PgWsGrant;

/*
 * Decide an upgrade: 0 and *grant filled when allowed (whatever it held
 * before is ignored); otherwise the HTTP status to refuse with (401 or 403)
 * and *reason, a short static text safe to send to the client and to log
 * (it never contains the token).  now is Unix seconds.
 *
 * 403 when the Host is refused (pgws_auth_anonymous_host), or the Origin:
 * with pg_ws.allowed_origins set, an origin it does not list; without
 * it, under pg_ws.auth = none, any origin but the server's own
 * (http://HOST or https://HOST, HOST the request's); with tokens, none.
 */
extern int	pgws_auth_upgrade(const PgWsAuthRequest *req, int64 now,
							  PgWsGrant *grant, const char **reason);

/*
 * The anonymous default: with pg_ws.auth = none and pg_ws.allow_anonymous
 * off, a request may be served only when it asks for this machine
 * (pgws_auth_local_host); false, with *reason, when not.
 * Browsers send the name of the page's site: this is what keeps a page of
 * another site, whose name a DNS rebinding made 127.0.0.1, from reading.
 * Always true with tokens, or with pg_ws.allow_anonymous = on.
 */
extern bool pgws_auth_anonymous_host(const PgWsAuthRequest *req,
									 const char **reason);

/*
 * Does the request ask for this machine: a loopback name (localhost,
 * 127.x.x.x, [::1], any port, or a name of pg_ws.listen_addresses when
 * those resolve to loopback addresses only), or no name at all (HTTP/1.0
 * without Host: no browser sends that)?
 */
extern bool pgws_auth_local_host(const PgWsAuthRequest *req);

/*
 * Write into buf the value of the WWW-Authenticate header of a 401 refused
 * with reason (RFC 6750, 3), e.g. Bearer realm="pg_ws", error=
 * "invalid_token", error_description="token expired".
 */
extern void pgws_auth_challenge(const char *reason, char *buf, size_t size);

/*
 * Copy src's filters into dst, in a new context under the current one (the
 * connection's): a grant made in a request's memory is kept that way.
 */
extern void pgws_grant_copy_filters(PgWsGrant *dst, const PgWsGrant *src);

/* the value filter of the filters claim's entry i (0 <= i < nfilters) */
extern const struct PgWsValueFilter *pgws_grant_filter_at(const PgWsGrant *grant,
														  int i);

/*
 * May the subscriber with this grant be sent this event (kind, or name for
 * kind -1) given its row?  Without a filters claim, yes; with one, only
 * when the most specific pattern that matches the event's name has a
 * filter that holds for json (the event) and row (beside a delete).
 */
extern bool pgws_grant_filter_allows(const PgWsGrant *grant, int kind,
									 const char *name, size_t name_len,
									 const char *json, uint32 len,
									 const char *row, uint32 row_len);

/* a parameter of a request's query string, decoded (see auth.c) */
extern char *pgws_query_param(const char *query, const char *name,
							  bool *malformed);
extern bool pgws_query_param_repeated(const char *query, const char *name);

/*
 * A text message from a subscriber.  AUTH_MSG_NOT_AUTH when it is not
 * {"type": "auth", "token": "..."}; AUTH_MSG_ACCEPTED when it is and the
 * token is valid (*grant, one pgws_auth_upgrade() made, replaced by the
 * new token's); AUTH_MSG_REJECTED with *reason otherwise (the transport
 * then closes with code 4001 and the reason).
 */
typedef enum PgWsAuthMessageResult
{
	AUTH_MSG_NOT_AUTH,
	AUTH_MSG_ACCEPTED,
	AUTH_MSG_REJECTED
} PgWsAuthMessageResult;

extern PgWsAuthMessageResult pgws_auth_message(const char *msg, size_t len,
											   int64 now, PgWsGrant *grant,
											   const char **reason);

/*
 * Is a grant made earlier still acceptable under the settings now in
 * force?  false, with *reason, for a subscriber let in without a token
 * once pg_ws.auth has become jwt.  (Token expiry is expires_at's business.)
 */
extern bool pgws_auth_grant_current(const PgWsGrant *grant, const char **reason);

/*
 * kind from pgws_event_kind_of(); for -1 (not one of the document's
 * events) the event's name from pgws_event_name_of(), or NULL
 */
static inline bool
pgws_grant_allows(const PgWsGrant *grant, int kind, const char *name,
				  size_t name_len)
{
	return pgws_event_set_has(&grant->events, kind, name, name_len);
}

/* must a connection with this grant be closed at now (Unix seconds)? */
static inline bool
pgws_grant_expired(const PgWsGrant *grant, int64 now)
{
	return grant->expires_at != 0 && now > grant->expires_at;
}

/*
 * Worker start and SIGHUP: (re)load the secret and the public key, and LOG
 * what is wrong with them (which file, why), never the secret itself.
 */
extern void pgws_auth_reload(void);

#endif							/* PG_WS_AUTH_H */
