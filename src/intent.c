#include "rekeyfs/intent.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "rekeyfs/meta.h"

#define MAGIC "rekeyfs-intent "

static const char intent_ctx[] = "rekeyfs v1 intent record";

static void mac_compute(uint8_t mac[RKFS_INTENT_MAC_LEN], const char *text,
			size_t len, const unsigned char *gen_key)
{
	unsigned char k[RKFS_KEY_LEN];

	/* a key of its own: records and content never share one */
	crypto_generichash(k, sizeof(k), (const unsigned char *)intent_ctx,
			   sizeof(intent_ctx) - 1, gen_key, RKFS_KEY_LEN);
	crypto_generichash(mac, RKFS_INTENT_MAC_LEN,
			   (const unsigned char *)text, len, k, sizeof(k));
	sodium_memzero(k, sizeof(k));
}

static char *hex_dup(const void *in, size_t len)
{
	char *out = malloc(2 * len + 1);

	if (out)
		sodium_bin2hex(out, 2 * len + 1, in, len);
	return out;
}

/* A relative path: no NUL, no empty, "." or ".." part, at most PATH_MAX. */
static bool path_ok(const char *p, size_t n)
{
	if (n == 0 || n >= PATH_MAX || memchr(p, '\0', n) || p[0] == '/' ||
	    p[n - 1] == '/')
		return false;
	for (size_t i = 0; i < n;) {
		const char *e = memchr(p + i, '/', n - i);
		size_t l = e ? (size_t)(e - (p + i)) : n - i;

		if (l == 0 || l > NAME_MAX || (l == 1 && p[i] == '.') ||
		    (l == 2 && p[i] == '.' && p[i + 1] == '.'))
			return false;
		i += l + 1;
	}
	return true;
}

static const char *base_of(const char *p)
{
	const char *s = strrchr(p, '/');

	return s ? s + 1 : p;
}

static bool temp_ok(const char *temp)
{
	return strncmp(base_of(temp), RKFS_TMP_PREFIX,
		       strlen(RKFS_TMP_PREFIX)) == 0;
}

int rkfs_intent_format(char **text, size_t *len, const struct rkfs_intent *in,
		       const unsigned char *gen_key)
{
	char old[2 * RKFS_HEADER_LEN + 1], nh[2 * RKFS_HEADER_LEN + 1];
	char mac[2 * RKFS_INTENT_MAC_LEN + 1];
	uint8_t m[RKFS_INTENT_MAC_LEN];
	char *t = NULL, *d = NULL, *body = NULL;
	int n, ret = -ENOMEM;

	*text = NULL;
	*len = 0;
	if (in->target == NULL || in->temp == NULL ||
	    !path_ok(in->target, strlen(in->target)) ||
	    !path_ok(in->temp, strlen(in->temp)) || !temp_ok(in->temp))
		return -EINVAL;
	t = hex_dup(in->target, strlen(in->target));
	d = hex_dup(in->temp, strlen(in->temp));
	if (t == NULL || d == NULL)
		goto out;
	sodium_bin2hex(old, sizeof(old), in->old_hdr, RKFS_HEADER_LEN);
	sodium_bin2hex(nh, sizeof(nh), in->new_hdr, RKFS_HEADER_LEN);
	n = asprintf(&body,
		     MAGIC "%u\ngeneration %" PRIu32 "\ndev %" PRIu64
			   "\nino %" PRIu64 "\nsize %" PRIu64
			   "\natime %lld %ld\nmtime %lld %ld\nold %s\nnew %s"
			   "\ntarget %s\ntemp %s\n",
		     RKFS_INTENT_VERSION, in->generation, in->dev, in->ino,
		     in->size, (long long)in->times[0].tv_sec,
		     in->times[0].tv_nsec, (long long)in->times[1].tv_sec,
		     in->times[1].tv_nsec, old, nh, t, d);
	if (n < 0) {
		body = NULL;
		goto out;
	}
	mac_compute(m, body, (size_t)n, gen_key);
	sodium_bin2hex(mac, sizeof(mac), m, sizeof(m));
	n = asprintf(text, "%smac %s\nend\n", body, mac);
	if (n < 0) {
		*text = NULL;
		goto out;
	}
	*len = (size_t)n;
	ret = 0;
out:
	free(t);
	free(d);
	free(body);
	return ret;
}

/* The parser's cursor over the record's lines. */
struct cur {
	const char *p, *end;
};

/*
 * The next line, which must be "key value" (or just "key" when key ends
 * the record); its value and length.  Returns false if it is not.
 */
static bool field(struct cur *c, const char *key, const char **v, size_t *vl)
{
	size_t kl = strlen(key);
	const char *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
	size_t ll;

	if (nl == NULL)
		return false; /* records end with a newline */
	ll = (size_t)(nl - c->p);
	if (ll < kl || memcmp(c->p, key, kl) != 0) /* not secret: a name */
		return false;
	if (v == NULL) {
		if (ll != kl)
			return false;
	} else {
		if (ll < kl + 2 || c->p[kl] != ' ')
			return false;
		*v = c->p + kl + 1;
		*vl = ll - kl - 1;
	}
	c->p = nl + 1;
	return true;
}

/* Decimal digits only, no sign, no leading zeros, no overflow. */
static bool dec(uint64_t *out, const char *s, size_t n, uint64_t max)
{
	uint64_t v = 0;

	if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		/* d > max: max - d would wrap (a version above 9 and a
		 * digit above it) */
		if (s[i] < '0' || s[i] > '9' || d > max ||
		    v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

static bool num(struct cur *c, const char *key, uint64_t *out, uint64_t max)
{
	const char *v;
	size_t vl;

	return field(c, key, &v, &vl) && dec(out, v, vl, max);
}

/* "SEC NSEC": seconds may be negative, nanoseconds below 10^9. */
static bool stamp(struct cur *c, const char *key, struct timespec *ts)
{
	const char *v, *sp;
	uint64_t s, ns;
	size_t vl;
	bool neg;

	if (!field(c, key, &v, &vl))
		return false;
	sp = memchr(v, ' ', vl);
	if (sp == NULL)
		return false;
	neg = v[0] == '-';
	if (!dec(&s, v + neg, (size_t)(sp - v) - neg, (uint64_t)INT64_MAX) ||
	    !dec(&ns, sp + 1, vl - (size_t)(sp + 1 - v), 999999999))
		return false;
	ts->tv_sec = neg ? -(time_t)s : (time_t)s;
	ts->tv_nsec = (long)ns;
	return true;
}

static bool hexbytes(struct cur *c, const char *key, uint8_t *out, size_t n)
{
	const char *v;
	size_t vl, got;

	return field(c, key, &v, &vl) && vl == 2 * n &&
	       sodium_hex2bin(out, n, v, vl, NULL, &got, NULL) == 0 &&
	       got == n;
}

static bool hexpath(struct cur *c, const char *key, char **out)
{
	const char *v;
	size_t vl, got;
	char *p;

	if (!field(c, key, &v, &vl) || vl == 0 || vl % 2 ||
	    vl / 2 >= PATH_MAX)
		return false;
	p = malloc(vl / 2 + 1);
	if (p == NULL)
		return false;
	if (sodium_hex2bin((unsigned char *)p, vl / 2, v, vl, NULL, &got,
			   NULL) != 0 ||
	    got != vl / 2 || !path_ok(p, got)) {
		free(p);
		return false;
	}
	p[got] = '\0';
	*out = p;
	return true;
}

int rkfs_intent_parse(struct rkfs_intent *in, const char *text, size_t len)
{
	struct cur c = {text, text + len};
	const char *v, *mac_line = NULL;
	uint64_t ver, gen = 0;
	size_t vl;
	bool ok;

	memset(in, 0, sizeof(*in));
	if (!field(&c, "rekeyfs-intent", &v, &vl) ||
	    !dec(&ver, v, vl, RKFS_INTENT_VERSION) || ver == 0)
		return -EINVAL;
	in->version = (unsigned)ver;
	ok = (ver < 3 || num(&c, "generation", &gen, UINT32_MAX)) &&
	     num(&c, "dev", &in->dev, UINT64_MAX) &&
	     num(&c, "ino", &in->ino, UINT64_MAX) &&
	     num(&c, "size", &in->size, (uint64_t)INT64_MAX) &&
	     stamp(&c, "atime", &in->times[0]) &&
	     stamp(&c, "mtime", &in->times[1]);
	in->generation = (uint32_t)gen;
	if (ok && ver >= 2)
		ok = hexbytes(&c, "old", in->old_hdr, RKFS_HEADER_LEN) &&
		     (ver < 3 ||
		      hexbytes(&c, "new", in->new_hdr, RKFS_HEADER_LEN)) &&
		     hexpath(&c, "target", &in->target) &&
		     hexpath(&c, "temp", &in->temp) && temp_ok(in->temp);
	else if (ok)
		ok = hexpath(&c, "name", &in->target) &&
		     strchr(in->target, '/') == NULL;
	if (ok && ver >= 3) {
		mac_line = c.p;
		ok = hexbytes(&c, "mac", in->mac, RKFS_INTENT_MAC_LEN);
		in->signed_len = (size_t)(mac_line - text);
	}
	if (!ok || !field(&c, "end", NULL, NULL) || c.p != c.end) {
		rkfs_intent_free(in);
		return -EINVAL;
	}
	return 0;
}

int rkfs_intent_verify(const struct rkfs_intent *in, const char *text,
		       const unsigned char *gen_key)
{
	uint8_t m[RKFS_INTENT_MAC_LEN];
	int ret;

	if (in->version != 3 || in->signed_len == 0)
		return -EINVAL;
	mac_compute(m, text, in->signed_len, gen_key);
	ret = sodium_memcmp(m, in->mac, sizeof(m)) == 0 ? 0 : -EBADMSG;
	sodium_memzero(m, sizeof(m));
	return ret;
}

void rkfs_intent_free(struct rkfs_intent *in)
{
	if (in == NULL)
		return;
	free(in->target);
	free(in->temp);
	memset(in, 0, sizeof(*in));
}
