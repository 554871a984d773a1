/*-------------------------------------------------------------------------
 *
 * filter.c
 *	  Value filters: ?filter= in PostgREST's operator syntax, parsed into
 *	  terms and matched against the row an event is about.
 *
 * This file owns the filter language (its grammar, its bounds, what each
 * operator means for each kind of value) and reading a value out of an
 * event's JSON.  It runs in the worker and must not know where events come
 * from or who receives them (broadcast.c asks it whether one matches).
 *
 * The language.  A filter is a PostgREST query string: terms joined by
 * '&', each field=[not.]operator.value, all of which must hold:
 *
 *		device_id=eq.cam-7&score=gte.90&first_name=like.Jo*
 *		client=in.(1,2,3)   email=is.null   age=not.lt.18
 *
 * Operators: eq, neq, gt, gte, lt, lte, like and ilike (* or % for any run
 * of characters, _ for one), in.(a,b,"c,d") and is.null, is.true,
 * is.false.  A field is a key of the event's "data" object, or of the row
 * that pg_ws carries beside some events (render.c), never sent to
 * subscribers: the deleted row of the deletes whose data carries only the
 * key (client_delete, employee_delete, a watched table's _delete) and of
 * attendance deletes, and a watched table's filter columns.
 *
 * Values compare as what the row holds: a JSON number as a number (1 and
 * 1.0 are equal, ids exact to 2^63), a timestamp pg_ws wrote
 * (2023-12-10T10:00:00Z) as an instant, against a filter value in ISO
 * 8601 with any zone (without one, UTC), any other string as text, byte by
 * byte (C collation), and true, false and null as themselves.  As in SQL,
 * a comparison with null, or with a field the event does not have, is
 * unknown, and an unknown term (not. included) does not hold: only is.null
 * takes null.  like and ilike take strings only, of at most 64 kB.
 *
 * src/filter.c
 *
 *-------------------------------------------------------------------------
 */
#include "server.h"

#include <ctype.h>
#include <math.h>

#include "common/hashfn.h"
#include "utils/memutils.h"

/* bounds on what a connection may ask for */
#define FILTER_MAX_LEN 1024
#define FILTER_MAX_TERMS 16
#define FILTER_MAX_IN 64

/*
 * like and ilike cost up to pattern times text: patterns of at most 256
 * bytes, against text of at most 64 kB (a longer text does not match), so
 * that no subscriber's pattern makes the worker spend long on one event
 */
#define LIKE_MAX_PATTERN 256
#define LIKE_MAX_TEXT 65536

typedef enum FilterOp
{
	FOP_EQ,
	FOP_NEQ,
	FOP_GT,
	FOP_GTE,
	FOP_LT,
	FOP_LTE,
	FOP_LIKE,
	FOP_ILIKE,
	FOP_IN,
	FOP_IS
} FilterOp;

static const struct
{
	const char *name;
	FilterOp	op;
}			filter_ops[] =
{
	{"eq", FOP_EQ}, {"neq", FOP_NEQ}, {"gt", FOP_GT}, {"gte", FOP_GTE},
	{"lt", FOP_LT}, {"lte", FOP_LTE}, {"like", FOP_LIKE},
	{"ilike", FOP_ILIKE}, {"in", FOP_IN}, {"is", FOP_IS}
};

/* what an is. term asks for */
typedef enum FilterIs
{
	FILTER_IS_NULL,
	FILTER_IS_TRUE,
	FILTER_IS_FALSE
} FilterIs;

/* one value of a term, read every way it may be compared */
typedef struct FilterValue
{
	char	   *text;			/* as given, NUL-terminated */
	int			len;
	bool		is_number;
	long double number;
	bool		is_time;
	int64		time_us;		/* microseconds since 1970-01-01 UTC */
} FilterValue;

typedef struct FilterTerm
{
	char	   *field;
	FilterOp	op;
	bool		negate;
	FilterIs	is;
	int			nvalues;
	FilterValue *values;
} FilterTerm;

struct PgWsValueFilter
{
	int			nterms;
	FilterTerm *terms;
};

/* a value read out of an event's JSON */
typedef enum JsonKind
{
	JV_MISSING,
	JV_NULL,
	JV_TRUE,
	JV_FALSE,
	JV_NUMBER,
	JV_STRING,
	JV_OTHER					/* an object or an array */
} JsonKind;

typedef struct JsonValue
{
	JsonKind	kind;
	const char *start;			/* the token, quotes included */
	int			len;
} JsonValue;

/* ------------------------------------------------------------ timestamps */

static bool
read_digits(const char **p, int n, int *out)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		if (!isdigit((unsigned char) (*p)[i]))
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/* days from 1970-01-01 to y-m-d (proleptic Gregorian) */
static int64
days_from_civil(int y, int m, int d)
{
	int			era;
	unsigned	yoe;
	unsigned	doy;
	unsigned	doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned) (y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (int64) era * 146097 + (int64) doe - 719468;
}

/*
 * An ISO 8601 timestamp, the whole text:
 *		YYYY-MM-DD[(T| )HH:MM[:SS[.ffffff]]][Z|+HH[:MM]|-HH[:MM]]
 * without a zone in UTC.
 */
static bool
parse_timestamp(const char *s, int len, int64 *out)
{
	const char *p = s;
	const char *end = s + len;
	int			y,
				mo,
				d,
				h = 0,
				mi = 0,
				sec = 0;
	int64		frac = 0;
	int64		offset_s = 0;

	if (len < 10 || !read_digits(&p, 4, &y) || *p++ != '-' ||
		!read_digits(&p, 2, &mo) || *p++ != '-' || !read_digits(&p, 2, &d))
		return false;
	if (mo < 1 || mo > 12 || d < 1 || d > 31)
		return false;
	if (p < end && (*p == 'T' || *p == ' '))
	{
		p++;
		if (end - p < 5 || !read_digits(&p, 2, &h) || *p++ != ':' ||
			!read_digits(&p, 2, &mi))
			return false;
		if (p < end && *p == ':')
		{
			p++;
			if (end - p < 2 || !read_digits(&p, 2, &sec))
				return false;
			if (p < end && *p == '.')
			{
				int			digits = 0;

				p++;
				while (p < end && isdigit((unsigned char) *p))
				{
					if (digits < 6)
						frac = frac * 10 + (*p - '0');
					digits++;
					p++;
				}
				if (digits == 0)
					return false;
				for (; digits < 6; digits++)
					frac *= 10;
			}
		}
		if (h > 24 || mi > 59 || sec > 60)
			return false;
	}
	if (p < end && *p == 'Z')
		p++;
	else if (p < end && (*p == '+' || *p == '-'))
	{
		int			sign = *p++ == '-' ? -1 : 1;
		int			oh,
					om = 0;

		if (end - p < 2 || !read_digits(&p, 2, &oh))
			return false;
		if (p < end && *p == ':')
			p++;
		if (p < end && !read_digits(&p, 2, &om))
			return false;
		if (oh > 15 || om > 59)
			return false;
		offset_s = sign * (oh * 3600 + om * 60);
	}
	if (p != end)
		return false;
	*out = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
			 offset_s) * 1000000) + frac;
	return true;
}

/* --------------------------------------------------------------- numbers */

/* a JSON number, all of text */
static bool
parse_number(const char *s, int len, long double *out)
{
	char		buf[64];
	char	   *end;
	const char *p = s;

	if (len == 0 || len >= (int) sizeof(buf))
		return false;
	/* JSON's grammar: -?digits[.digits][(e|E)[+-]digits] */
	if (*p == '-')
		p++;
	if (p >= s + len || !isdigit((unsigned char) *p))
		return false;
	for (const char *q = p; q < s + len; q++)
		if (!isdigit((unsigned char) *q) && *q != '.' && *q != 'e' &&
			*q != 'E' && *q != '+' && *q != '-')
			return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	errno = 0;
	*out = strtold(buf, &end);
	return *end == '\0' && errno == 0 && isfinite(*out);
}

/* ----------------------------------------------------------------- parse */

static bool
value_init(FilterValue *v, const char *s, int len)
{
	v->text = pnstrdup(s, len);
	v->len = len;
	v->is_number = parse_number(s, len, &v->number);
	v->is_time = parse_timestamp(s, len, &v->time_us);
	return true;
}

/* the values of in.(a,b,"c,d"): double quotes keep commas, \ escapes */
static const char *
parse_in_list(FilterTerm *t, const char *s, int len)
{
	const char *p = s;
	const char *end = s + len;
	StringInfoData item;

	if (len < 2 || s[0] != '(' || s[len - 1] != ')')
		return "in takes a list in parentheses: in.(1,2,3)";
	p++;
	end--;
	t->values = palloc(FILTER_MAX_IN * sizeof(FilterValue));
	t->nvalues = 0;
	initStringInfo(&item);
	for (;;)
	{
		resetStringInfo(&item);
		if (p < end && *p == '"')
		{
			p++;
			while (p < end && *p != '"')
			{
				if (*p == '\\' && p + 1 < end)
					p++;
				appendStringInfoChar(&item, *p++);
			}
			if (p >= end)
				return "an unterminated quoted value in an in.() list";
			p++;
			if (p < end && *p != ',')
				return "a quoted value in an in.() list must be followed by ',' or ')'";
		}
		else
		{
			while (p < end && *p != ',')
				appendStringInfoChar(&item, *p++);
		}
		if (t->nvalues == FILTER_MAX_IN)
			return "an in.() list takes at most 64 values";
		value_init(&t->values[t->nvalues++], item.data, item.len);
		if (p >= end)
			break;
		p++;					/* the comma */
	}
	return NULL;
}

/* one field=[not.]op.value; NULL or what is wrong with it */
static const char *
parse_term(FilterTerm *t, const char *s, int len)
{
	const char *eq = memchr(s, '=', len);
	const char *p;
	const char *end = s + len;
	const char *dot;
	int			flen;

	if (eq == NULL)
		return "a term is field=operator.value, as in device_id=eq.cam-7";
	flen = eq - s;
	if (flen == 0 || flen >= NAMEDATALEN)
		return "a field name is 1 to 63 characters";
	for (int i = 0; i < flen; i++)
		if (!(islower((unsigned char) s[i]) || s[i] == '_' ||
			  (i > 0 && isdigit((unsigned char) s[i]))))
			return "a field name is a lower-case letter or '_' followed by lower-case letters, digits and '_'";
	t->field = pnstrdup(s, flen);
	p = eq + 1;
	t->negate = false;
	if (end - p >= 4 && strncmp(p, "not.", 4) == 0)
	{
		t->negate = true;
		p += 4;
	}
	dot = memchr(p, '.', end - p);
	if (dot == NULL)
		return "a term is field=operator.value, as in device_id=eq.cam-7";
	t->op = (FilterOp) -1;
	for (int i = 0; i < (int) lengthof(filter_ops); i++)
		if ((int) strlen(filter_ops[i].name) == dot - p &&
			strncmp(p, filter_ops[i].name, dot - p) == 0)
			t->op = filter_ops[i].op;
	if ((int) t->op < 0)
		return "unknown operator: use eq, neq, gt, gte, lt, lte, like, ilike, in or is";
	p = dot + 1;
	if (t->op == FOP_IN)
		return parse_in_list(t, p, end - p);
	if (t->op == FOP_IS)
	{
		if (end - p == 4 && strncmp(p, "null", 4) == 0)
			t->is = FILTER_IS_NULL;
		else if (end - p == 4 && strncmp(p, "true", 4) == 0)
			t->is = FILTER_IS_TRUE;
		else if (end - p == 5 && strncmp(p, "false", 5) == 0)
			t->is = FILTER_IS_FALSE;
		else
			return "is takes null, true or false";
		t->nvalues = 0;
		return NULL;
	}
	t->values = palloc(sizeof(FilterValue));
	t->nvalues = 1;
	value_init(&t->values[0], p, end - p);
	if ((t->op == FOP_LIKE || t->op == FOP_ILIKE) && end - p > LIKE_MAX_PATTERN)
		return "a like or ilike pattern is at most 256 bytes";
	if ((t->op == FOP_GT || t->op == FOP_GTE || t->op == FOP_LT ||
		 t->op == FOP_LTE) && end - p == 0)
		return "a comparison needs a value";
	return NULL;
}

/*
 * Parse text (already URL-decoded) into *filter, palloc'd in the current
 * memory context; NULL, or what is wrong with it (for a 400).
 */
const char *
pgws_value_filter_parse(const char *text, PgWsValueFilter **filter)
{
	PgWsValueFilter *f = palloc0(sizeof(PgWsValueFilter));
	int			len = strlen(text);
	const char *p = text;

	*filter = NULL;
	if (len > FILTER_MAX_LEN)
		return "a filter is at most 1024 bytes";
	f->terms = palloc0(FILTER_MAX_TERMS * sizeof(FilterTerm));
	while (p <= text + len)
	{
		const char *amp = strchr(p, '&');
		int			tlen = amp ? amp - p : (int) (text + len - p);
		const char *why;

		if (f->nterms == FILTER_MAX_TERMS)
			return "a filter has at most 16 terms";
		why = parse_term(&f->terms[f->nterms], p, tlen);
		if (why != NULL)
			return psprintf("%s (in \"%.*s\")", why, Min(tlen, 80), p);
		f->nterms++;
		if (amp == NULL)
			break;
		p = amp + 1;
	}
	*filter = f;
	return NULL;
}

/* the fields the filter names, for the caller to check (NULL-terminated) */
const char *
pgws_value_filter_field(const PgWsValueFilter *filter, int i)
{
	return i < filter->nterms ? filter->terms[i].field : NULL;
}

/* ---------------------------------------------------------------- match */

/* skip whitespace */
static const char *
ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* the end of the JSON string starting at p (its opening quote) */
static const char *
string_end(const char *p, const char *end)
{
	for (p++; p < end; p++)
	{
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* the end of the JSON value starting at p, and its kind */
static const char *
value_end(const char *p, const char *end, JsonKind *kind)
{
	int			depth = 0;

	if (p >= end)
		return NULL;
	switch (*p)
	{
		case '"':
			*kind = JV_STRING;
			return string_end(p, end);
		case 'n':
			*kind = JV_NULL;
			return end - p >= 4 ? p + 4 : NULL;
		case 't':
			*kind = JV_TRUE;
			return end - p >= 4 ? p + 4 : NULL;
		case 'f':
			*kind = JV_FALSE;
			return end - p >= 5 ? p + 5 : NULL;
		case '{':
		case '[':
			*kind = JV_OTHER;
			for (; p < end; p++)
			{
				if (*p == '"')
				{
					p = string_end(p, end);
					if (p == NULL)
						return NULL;
					p--;
				}
				else if (*p == '{' || *p == '[')
					depth++;
				else if ((*p == '}' || *p == ']') && --depth == 0)
					return p + 1;
			}
			return NULL;
		default:
			*kind = JV_NUMBER;
			while (p < end && (isdigit((unsigned char) *p) || *p == '-' ||
							   *p == '+' || *p == '.' || *p == 'e' || *p == 'E'))
				p++;
			return p;
	}
}

/* the member field of the JSON object at obj (its '{'), top level only */
static JsonValue
object_member(const char *obj, const char *end, const char *field)
{
	JsonValue	v = {JV_MISSING, NULL, 0};
	size_t		flen = strlen(field);
	const char *p = ws(obj, end);

	if (p >= end || *p != '{')
		return v;
	p = ws(p + 1, end);
	while (p < end && *p == '"')
	{
		const char *kend = string_end(p, end);
		const char *vend;
		JsonKind	kind;
		bool		match;

		if (kend == NULL)
			return v;
		/* field names need no escapes: a key with one is another key */
		match = (size_t) (kend - p - 2) == flen && memcmp(p + 1, field, flen) == 0;
		p = ws(kend, end);
		if (p >= end || *p != ':')
			return v;
		p = ws(p + 1, end);
		vend = value_end(p, end, &kind);
		if (vend == NULL)
			return v;
		if (match)
		{
			v.kind = kind;
			v.start = p;
			v.len = vend - p;
			return v;
		}
		p = ws(vend, end);
		if (p < end && *p == ',')
			p = ws(p + 1, end);
		else
			break;
	}
	return v;
}

/* the "data" object of an event: {"event": ..., "data": {...}} */
static const char *
event_data(const char *json, const char *end)
{
	JsonValue	data = object_member(json, end, "data");

	return data.kind == JV_OTHER && data.start[0] == '{' ? data.start : NULL;
}

static bool
read_hex4(const char *p, const char *end, uint32 *out)
{
	uint32		v = 0;

	if (end - p < 4)
		return false;
	for (int i = 0; i < 4; i++)
	{
		int			h = pgws_hex_digit(p[i]);

		if (h < 0)
			return false;
		v = v << 4 | h;
	}
	*out = v;
	return true;
}

static void
append_utf8(StringInfo out, uint32 c)
{
	if (c < 0x80)
		appendStringInfoChar(out, (char) c);
	else if (c < 0x800)
	{
		appendStringInfoChar(out, (char) (0xC0 | (c >> 6)));
		appendStringInfoChar(out, (char) (0x80 | (c & 0x3F)));
	}
	else if (c < 0x10000)
	{
		appendStringInfoChar(out, (char) (0xE0 | (c >> 12)));
		appendStringInfoChar(out, (char) (0x80 | ((c >> 6) & 0x3F)));
		appendStringInfoChar(out, (char) (0x80 | (c & 0x3F)));
	}
	else
	{
		appendStringInfoChar(out, (char) (0xF0 | (c >> 18)));
		appendStringInfoChar(out, (char) (0x80 | ((c >> 12) & 0x3F)));
		appendStringInfoChar(out, (char) (0x80 | ((c >> 6) & 0x3F)));
		appendStringInfoChar(out, (char) (0x80 | (c & 0x3F)));
	}
}

/* a JSON string token's text, as UTF-8 */
static void
unescape(const JsonValue *v, StringInfo out)
{
	const char *p = v->start + 1;
	const char *end = v->start + v->len - 1;

	resetStringInfo(out);
	while (p < end)
	{
		uint32		c;
		uint32		lo;

		if (*p != '\\')
		{
			appendStringInfoChar(out, *p++);
			continue;
		}
		p++;
		if (p >= end)
			break;
		switch (*p)
		{
			case 'n':
				appendStringInfoChar(out, '\n');
				break;
			case 't':
				appendStringInfoChar(out, '\t');
				break;
			case 'r':
				appendStringInfoChar(out, '\r');
				break;
			case 'b':
				appendStringInfoChar(out, '\b');
				break;
			case 'f':
				appendStringInfoChar(out, '\f');
				break;
			case 'u':
				if (!read_hex4(p + 1, end, &c))
					return;
				p += 4;
				if (c >= 0xD800 && c < 0xDC00 && end - p > 6 && p[1] == '\\' &&
					p[2] == 'u' && read_hex4(p + 3, end, &lo) &&
					lo >= 0xDC00 && lo < 0xE000)
				{
					c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
					p += 6;
				}
				append_utf8(out, c);
				break;
			default:
				appendStringInfoChar(out, *p);
				break;
		}
		p++;
	}
}

/* SQL LIKE: % or * any run, _ one byte; case folded for ilike (ASCII) */
static bool
like_match(const char *s, int slen, const char *pat, int plen, bool fold)
{
	int			si = 0,
				pi = 0,
				star_p = -1,
				star_s = 0;

	while (si < slen)
	{
		if (pi < plen && (pat[pi] == '%' || pat[pi] == '*'))
		{
			star_p = pi++;
			star_s = si;
		}
		else if (pi < plen && (pat[pi] == '_' ||
							   (fold ? tolower((unsigned char) pat[pi]) ==
								tolower((unsigned char) s[si]) :
								pat[pi] == s[si])))
		{
			pi++;
			si++;
		}
		else if (star_p >= 0)
		{
			pi = star_p + 1;
			si = ++star_s;
		}
		else
			return false;
	}
	while (pi < plen && (pat[pi] == '%' || pat[pi] == '*'))
		pi++;
	return pi == plen;
}

/*
 * -1, 0, 1, or 2 when the two do not compare (unknown).  text is v's
 * string, unescaped, when v is one.
 */
static int
compare(const JsonValue *v, const StringInfo text, const FilterValue *fv)
{
	if (v->kind == JV_NUMBER)
	{
		long double n;

		if (!fv->is_number || !parse_number(v->start, v->len, &n))
			return 2;
		return n < fv->number ? -1 : n > fv->number ? 1 : 0;
	}
	if (v->kind == JV_TRUE || v->kind == JV_FALSE)
	{
		bool		b = v->kind == JV_TRUE;

		if (strcmp(fv->text, "true") == 0)
			return b ? 0 : 1;
		if (strcmp(fv->text, "false") == 0)
			return b ? -1 : 0;
		return 2;
	}
	if (v->kind != JV_STRING)
		return 2;
	if (fv->is_time)
	{
		int64		t;

		if (parse_timestamp(text->data, text->len, &t))
			return t < fv->time_us ? -1 : t > fv->time_us ? 1 : 0;
	}
	{
		int			n = memcmp(text->data, fv->text, Min(text->len, fv->len));

		if (n != 0)
			return n < 0 ? -1 : 1;
		return text->len < fv->len ? -1 : text->len > fv->len ? 1 : 0;
	}
}

/*
 * Does the term hold for value v?  Unknown is false, also when negated.
 * A string is unescaped once, into scratch, whatever the term compares it
 * with.
 */
static bool
term_holds(const FilterTerm *t, const JsonValue *v, StringInfo scratch)
{
	bool		result = false;
	int			c;

	if (t->op == FOP_IS)
	{
		if (v->kind == JV_MISSING)
			return false;
		result = t->is == FILTER_IS_NULL ? v->kind == JV_NULL :
			t->is == FILTER_IS_TRUE ? v->kind == JV_TRUE : v->kind == JV_FALSE;
		return t->negate ? !result : result;
	}
	if (v->kind == JV_MISSING || v->kind == JV_NULL || v->kind == JV_OTHER)
		return false;
	if (v->kind == JV_STRING)
		unescape(v, scratch);
	switch (t->op)
	{
		case FOP_LIKE:
		case FOP_ILIKE:
			if (v->kind != JV_STRING || scratch->len > LIKE_MAX_TEXT)
				return false;
			result = like_match(scratch->data, scratch->len, t->values[0].text,
								t->values[0].len, t->op == FOP_ILIKE);
			break;
		case FOP_IN:
			for (int i = 0; i < t->nvalues && !result; i++)
				result = compare(v, scratch, &t->values[i]) == 0;
			break;
		default:
			c = compare(v, scratch, &t->values[0]);
			if (c == 2)
				return false;
			result = t->op == FOP_EQ ? c == 0 :
				t->op == FOP_NEQ ? c != 0 :
				t->op == FOP_GT ? c > 0 :
				t->op == FOP_GTE ? c >= 0 :
				t->op == FOP_LT ? c < 0 : c <= 0;
			break;
	}
	return t->negate ? !result : result;
}

/* where a string is unescaped into: one, for as long as the worker runs */
static StringInfo
scratch_buffer(void)
{
	static StringInfo scratch = NULL;

	if (scratch == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		scratch = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	return scratch;
}

/* an event as filters read it, its "data" found once and only if needed */
typedef struct EventFields
{
	const char *json;			/* the event */
	uint32		len;
	const char *row;			/* the row beside it; NULL if none */
	uint32		row_len;
	bool		data_read;
	const char *data;			/* its "data" object, once read; NULL if none */
} EventFields;

/*
 * A field's value: in the row pg_ws carries beside the event (a deleted
 * row, filter columns) first, then in its data.
 */
static JsonValue
field_value(EventFields *e, const char *field)
{
	JsonValue	v = {JV_MISSING, NULL, 0};

	if (e->row != NULL)
		v = object_member(e->row, e->row + e->row_len, field);
	if (v.kind != JV_MISSING)
		return v;
	if (!e->data_read)
	{
		e->data = event_data(e->json, e->json + e->len);
		e->data_read = true;
	}
	if (e->data != NULL)
		v = object_member(e->data, e->json + e->len, field);
	return v;
}

/*
 * Does the event json (len bytes) match filter?  row (row_len bytes, or
 * NULL) is the row pg_ws carries beside the event (field_value).
 */
bool
pgws_value_filter_matches(const PgWsValueFilter *filter, const char *json,
						  uint32 len, const char *row, uint32 row_len)
{
	EventFields e = {json, len, row, row_len, false, NULL};
	StringInfo	scratch = scratch_buffer();

	for (int i = 0; i < filter->nterms; i++)
	{
		const FilterTerm *t = &filter->terms[i];
		JsonValue	v = field_value(&e, t->field);

		if (!term_holds(t, &v, scratch))
			return false;
	}
	return true;
}

/* ------------------------------------------------------------ index keys */

/*
 * Keys for broadcast.c's index of idle filtered subscribers.  A filter
 * with a term "field=eq.v" or "field=in.(...)" (not negated) holds only
 * for events whose value of that field equals one of the term's values,
 * so a subscriber can wait under the keys of those values and be woken by
 * the events that carry one.  Equal (compare() == 0) must mean equal keys;
 * the converse need not hold, since every woken subscriber's whole filter
 * is asked again: a collision costs a look, never an event.
 *
 * compare() says equal for a JSON number and a value that is the same
 * number, for a string and a value of the same instant when the value is
 * a timestamp and the string one pg_ws wrote, else for the same bytes; and
 * for true and false as the texts "true" and "false".  So a value is keyed
 * as text always, as a number when it reads as one, as an instant when it
 * reads as one; an event's value as a number (a JSON number), or as text
 * (a string, unescaped; true; false) and, for a string that reads as a
 * timestamp, also as an instant.
 */
#define KEY_TEXT 1
#define KEY_NUMBER 2
#define KEY_TIME 3

static uint64
text_key(const char *s, int len)
{
	return hash_bytes_extended((const unsigned char *) s, len, KEY_TEXT);
}

/*
 * Numbers that compare equal get the same key: the sign, the binary
 * exponent and the first 64 bits of the mantissa (a long double with more,
 * as on aarch64, shares keys with its neighbours: a collision, not a miss).
 */
static uint64
number_key(long double n)
{
	struct
	{
		int32		sign_exp;
		int32		zero;
		uint64		mantissa;
	}			k;
	int			exp = 0;

	memset(&k, 0, sizeof(k));
	if (n != 0)
	{
		long double m = frexpl(fabsl(n), &exp);

		k.mantissa = (uint64) ldexpl(m, 64);
		k.sign_exp = n < 0 ? -exp - 1 : exp;
		k.zero = 1;
	}
	return hash_bytes_extended((const unsigned char *) &k, sizeof(k),
							   KEY_NUMBER);
}

static uint64
time_key(int64 us)
{
	return hash_bytes_extended((const unsigned char *) &us, sizeof(us),
							   KEY_TIME);
}

static int
key_cmp(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * The field and the keys under which a subscriber with this filter may
 * wait: those of its first eq or in term that is not negated, sorted and
 * without duplicates, palloc'd in the current memory context.  Returns
 * how many (0: the filter has no such term, and cannot be indexed).
 */
int
pgws_value_filter_index_keys(const PgWsValueFilter *filter,
							 const char **field, uint64 **keys)
{
	for (int i = 0; i < filter->nterms; i++)
	{
		const FilterTerm *t = &filter->terms[i];
		uint64	   *k;
		int			n = 0;
		int			unique = 0;

		if (t->negate || (t->op != FOP_EQ && t->op != FOP_IN))
			continue;
		k = palloc(3 * Max(t->nvalues, 1) * sizeof(uint64));
		for (int v = 0; v < t->nvalues; v++)
		{
			const FilterValue *fv = &t->values[v];

			k[n++] = text_key(fv->text, fv->len);
			if (fv->is_number)
				k[n++] = number_key(fv->number);
			if (fv->is_time)
				k[n++] = time_key(fv->time_us);
		}
		qsort(k, n, sizeof(uint64), key_cmp);
		for (int j = 0; j < n; j++)
			if (unique == 0 || k[unique - 1] != k[j])
				k[unique++] = k[j];
		*field = t->field;
		*keys = k;
		return unique;
	}
	return 0;
}

/*
 * The keys of an event's value of field (looked up as the filter looks it
 * up: in the row beside it first, then in its data), at most two, into
 * keys; returns how many (0: the event has no such value, or null, or an
 * object or an array, which no eq or in term takes).
 */
int
pgws_value_event_keys(const char *field, const char *json, uint32 len,
					  const char *row, uint32 row_len, uint64 *keys)
{
	EventFields e = {json, len, row, row_len, false, NULL};
	JsonValue	v = field_value(&e, field);
	StringInfo	scratch;
	long double n;
	int64		t;

	switch (v.kind)
	{
		case JV_NUMBER:
			if (!parse_number(v.start, v.len, &n))
				return 0;
			keys[0] = number_key(n);
			return 1;
		case JV_TRUE:
			keys[0] = text_key("true", 4);
			return 1;
		case JV_FALSE:
			keys[0] = text_key("false", 5);
			return 1;
		case JV_STRING:
			scratch = scratch_buffer();
			unescape(&v, scratch);
			keys[0] = text_key(scratch->data, scratch->len);
			if (!parse_timestamp(scratch->data, scratch->len, &t))
				return 1;
			keys[1] = time_key(t);
			return 2;
		default:
			return 0;
	}
}
