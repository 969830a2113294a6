/* tea._otlpfast: the native fast path for OTLP trace exports.

   map_traces(data, tenant_from_resource, default_tenant, only_tenant, now, latest, max_us, source_protocol, price)
   takes the bytes of a serialized ExportTraceServiceRequest as received, and returns the NDJSON of the
   normalised span events exactly as
   tea.receive.otlp_map.pb_spans + tea.pipeline.normalise.Normaliser (without stages) +
   tea.types.encode_lines would produce them (``price`` is the Normaliser's PriceTable.lookup, for the cost
   of a span that names a model and tokens):

       (ndjson: bytes, accepted: int, total: int, low: int, high: int,
        rejections: list[(index, code, event_id, detail)])

   or None ("not handled") for anything it does not reproduce exactly (duplicate attribute keys,
   deep AnyValue nesting, float token counts, missing ids, a repeated singular sub-message,
   malformed or surprising wire data, ...): the caller then parses the request with the protobuf runtime
   (upb) and runs the Python path. What it handles, upb accepts: every string field — also those it does
   not store, and those of spans it refuses — is checked as strict UTF-8 and every sub-message for its
   wire format (see "what the output never shows"), so the caller needs no parse by upb first.
   ``detail`` is the timestamp in µs (invalid_timestamp, clock_skew) or the tenant (forbidden_tenant);
   the caller builds the error messages.

   The input is untrusted: every read is bounds-checked, varints are at most 10 bytes (tags and lengths
   5, as upb reads them), lengths are checked against what remains, AnyValue nesting is limited to
   MAX_DEPTH, and the output is capped. Strings are validated as strict UTF-8 and escaped like msgspec's
   JSON encoder. Fuzzed under ASan and UBSan against the Python path: fuzz/, docs/development.md. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#ifdef TEA_FUZZ_ALLOC
/* The fuzz build (setup.py, TEA_OTLPFAST_SANITIZE=1): this file's buffers from libc's malloc, which
   AddressSanitizer watches, while CPython keeps its fast small-object allocator (its arenas would hide an
   overflow of a small buffer). Memory Python allocated is still freed with (PyMem_Free)(p). */
#include <stdlib.h>
#define PyMem_Malloc(n) malloc(n)
#define PyMem_Calloc(n, size) calloc((n), (size))
#define PyMem_Realloc(p, n) realloc((p), (n))
#define PyMem_Free(p) free(p)
#endif

#define MAX_DEPTH 16
#define MAX_OUTPUT ((size_t)1 << 30)  /* 1 GiB of NDJSON per request, then "not handled" */
#define NH (-1)                       /* not handled */

/* ------------------------------------------------------------------ output buffer */
typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static int buf_grow(Buf *b, size_t extra) {
    if (extra > MAX_OUTPUT || b->len > MAX_OUTPUT - extra) return NH;
    size_t need = b->len + extra;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need) cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (!p) return NH;
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int put(Buf *b, const void *s, size_t n) {
    if (n == 0) return 0; /* an empty write into a buffer never grown: no memcpy(NULL, ...) */
    if (b->cap - b->len < n && buf_grow(b, n)) return NH;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

#define PUTS(b, lit) put((b), (lit), sizeof(lit) - 1)

static inline int putch(Buf *b, char c) {
    if (b->cap == b->len && buf_grow(b, 1)) return NH;
    b->p[b->len++] = c;
    return 0;
}

static int put_u64(Buf *b, uint64_t v) {
    char tmp[24];
    int i = 24;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return put(b, tmp + i, (size_t)(24 - i));
}

static int put_i64(Buf *b, int64_t v) {
    if (v < 0) {
        if (putch(b, '-')) return NH;
        return put_u64(b, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(b, (uint64_t)v);
}

/* msgspec's float format: Python's repr digits, but decimal notation for exponents -5..15 and
   exponents written without '+' or leading zeros; nan and infinities as null. */
static int put_double(Buf *b, double x) {
    if (!isfinite(x)) return PUTS(b, "null");
    char *s = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (!s) {
        PyErr_Clear();
        return NH;
    }
    int rc = 0;
    char *e = strchr(s, 'e');
    if (!e) {
        rc = put(b, s, strlen(s));
    } else {
        char *q = e + 1;
        int neg_exp = 0;
        if (*q == '+') q++;
        else if (*q == '-') { neg_exp = 1; q++; }
        while (*q == '0' && q[1]) q++;
        long exp = strtol(q, NULL, 10);
        if (neg_exp) exp = -exp;
        if (exp == -5) {
            /* mantissa d[.ddd] -> 0.0000d[ddd] */
            char *m = s;
            if (*m == '-') { rc |= putch(b, '-'); m++; }
            rc |= PUTS(b, "0.0000");
            for (; m < e; m++)
                if (*m != '.') rc |= putch(b, *m);
        } else {
            rc |= put(b, s, (size_t)(e - s));
            rc |= putch(b, 'e');
            if (neg_exp) rc |= putch(b, '-');
            rc |= put(b, q, strlen(q));
        }
    }
    (PyMem_Free)(s);  /* Python's memory (the parentheses: never a fuzz build's libc free) */
    return rc ? NH : 0;
}

/* ------------------------------------------------------------------ UTF-8 and JSON strings */
/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF). Returns the number of code points or -1. */
static Py_ssize_t utf8_count(const uint8_t *s, size_t n) {
    size_t i = 0;
    Py_ssize_t cps = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
        } else if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80) return -1;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (i + 2 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return -1;
            if (c == 0xE0 && s[i + 1] < 0xA0) return -1;  /* overlong */
            if (c == 0xED && s[i + 1] >= 0xA0) return -1; /* surrogate */
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (i + 3 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 ||
                (s[i + 3] & 0xC0) != 0x80)
                return -1;
            if (c == 0xF0 && s[i + 1] < 0x90) return -1;  /* overlong */
            if (c == 0xF4 && s[i + 1] >= 0x90) return -1; /* > U+10FFFF */
            i += 4;
        } else {
            return -1;
        }
        cps++;
    }
    return cps;
}

/* Byte length of the first `limit` code points of valid UTF-8 (Python's s[:limit]). */
static size_t utf8_prefix(const uint8_t *s, size_t n, size_t limit) {
    size_t i = 0, cps = 0;
    while (i < n && cps < limit) {
        uint8_t c = s[i];
        i += c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        cps++;
    }
    return i > n ? n : i;
}

static const char HEX[] = "0123456789abcdef";

/* JSON string as msgspec writes it; the text must already be valid UTF-8. */
static int put_json_str_valid(Buf *b, const uint8_t *s, size_t n) {
    if (buf_grow(b, n + 2)) return NH;
    b->p[b->len++] = '"';
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        if (put(b, s + start, i - start)) return NH;
        start = i + 1;
        char esc[6];
        switch (c) {
        case '"': if (PUTS(b, "\\\"")) return NH; break;
        case '\\': if (PUTS(b, "\\\\")) return NH; break;
        case '\b': if (PUTS(b, "\\b")) return NH; break;
        case '\t': if (PUTS(b, "\\t")) return NH; break;
        case '\n': if (PUTS(b, "\\n")) return NH; break;
        case '\f': if (PUTS(b, "\\f")) return NH; break;
        case '\r': if (PUTS(b, "\\r")) return NH; break;
        default:
            esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = HEX[c >> 4]; esc[5] = HEX[c & 15];
            if (put(b, esc, 6)) return NH;
        }
    }
    if (start < n && put(b, s + start, n - start)) return NH; /* (s may be NULL when n is 0) */
    return putch(b, '"');
}

static int put_hex_str(Buf *b, const uint8_t *s, size_t n) {
    if (n > (MAX_OUTPUT / 2) || buf_grow(b, 2 * n + 2)) return NH;
    char *o = b->p + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        *o++ = HEX[s[i] >> 4];
        *o++ = HEX[s[i] & 15];
    }
    *o++ = '"';
    b->len += 2 * n + 2;
    return 0;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* base64 text (no quotes) */
static int put_b64(Buf *b, const uint8_t *s, size_t n) {
    if (n == 0) return 0; /* into a buffer never grown: no pointer arithmetic on NULL */
    size_t out = (n + 2) / 3 * 4;
    if (n > MAX_OUTPUT || buf_grow(b, out)) return NH;
    char *o = b->p + b->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        *o++ = B64[v >> 18]; *o++ = B64[(v >> 12) & 63]; *o++ = B64[(v >> 6) & 63]; *o++ = B64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        *o++ = B64[v >> 18]; *o++ = B64[(v >> 12) & 63]; *o++ = '='; *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8);
        *o++ = B64[v >> 18]; *o++ = B64[(v >> 12) & 63]; *o++ = B64[(v >> 6) & 63]; *o++ = '=';
    }
    b->len += out;
    return 0;
}

/* ------------------------------------------------------------------ protobuf reading */
typedef struct {
    const uint8_t *p, *end;
} Rd;

static inline int rd_varint(Rd *r, uint64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end) return NH;
        uint8_t c = *r->p++;
        if (i == 9 && c > 1) return NH; /* more than 64 bits */
        v |= (uint64_t)(c & 0x7F) << (7 * i);
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return NH;
}

/* Tags and lengths: upb reads them as 32-bit varints of at most 5 bytes, and refuses the request when one
   is longer (even a zero-padded one, which a 64-bit varint reader would take). */
static inline int rd_varint32(Rd *r, uint64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < 5; i++) {
        if (r->p >= r->end) return NH;
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7F) << (7 * i);
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return NH;
}

static inline int rd_tag(Rd *r, uint32_t *field, int *wt) {
    uint64_t v;
    if (rd_varint32(r, &v)) return NH;
    if (v > 0xFFFFFFFFull || (v >> 3) == 0) return NH;
    *field = (uint32_t)(v >> 3);
    *wt = (int)(v & 7);
    return 0;
}

static inline int rd_len(Rd *r, const uint8_t **p, size_t *n) {
    uint64_t v;
    if (rd_varint32(r, &v)) return NH;
    if (v > (uint64_t)(r->end - r->p)) return NH;
    *p = r->p;
    *n = (size_t)v;
    r->p += v;
    return 0;
}

/* A string field: every occurrence is checked as strict UTF-8 as it is read (upb refuses a request with one
   invalid occurrence, even when a later one replaces it). */
static int rd_str(Rd *r, int wt, const uint8_t **p, size_t *n) {
    if (wt != 2 || rd_len(r, p, n)) return NH;
    return utf8_count(*p, *n) < 0 ? NH : 0;
}

static inline int rd_fixed64(Rd *r, uint64_t *out) {
    if (r->end - r->p < 8) return NH;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | r->p[i];
    r->p += 8;
    *out = v;
    return 0;
}

static int rd_skip(Rd *r, int wt) {
    uint64_t v;
    const uint8_t *p;
    size_t n;
    switch (wt) {
    case 0: return rd_varint(r, &v);
    case 1: if (r->end - r->p < 8) return NH; r->p += 8; return 0;
    case 2: return rd_len(r, &p, &n);
    case 5: if (r->end - r->p < 4) return NH; r->p += 4; return 0;
    default: return NH; /* groups and invalid wire types */
    }
}

/* ------------------------------------------------------------------ AnyValue and KeyValue */
enum { V_NONE, V_STR, V_BOOL, V_INT, V_DBL, V_ARR, V_KV, V_BYTES };

typedef struct {
    int type;
    const uint8_t *s; /* STR, BYTES: the bytes; ARR, KV: the sub-message */
    size_t n;
    int64_t i;        /* BOOL, INT; ARR, KV: number of entries */
    double d;
} Val;

typedef struct {
    const uint8_t *k;
    size_t kn;
    Val v;
} KV;

typedef struct {
    KV *a;
    size_t n, cap;
} KVVec;

static int count_entries(const uint8_t *p, size_t n, int64_t *count) {
    Rd r = {p, p + n};
    int64_t c = 0;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        if (rd_tag(&r, &f, &wt)) return NH;
        if (f == 1) {
            const uint8_t *q;
            size_t m;
            if (wt != 2 || rd_len(&r, &q, &m)) return NH;
            c++;
        } else if (rd_skip(&r, wt)) {
            return NH;
        }
    }
    *count = c;
    return 0;
}

static int parse_anyvalue(const uint8_t *p, size_t n, Val *v) {
    Rd r = {p, p + n};
    int seen = 0;
    v->type = V_NONE;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        uint64_t u;
        if (rd_tag(&r, &f, &wt)) return NH;
        if (f >= 1 && f <= 7 && seen++) return NH; /* a oneof set twice: merge rules, leave it to Python */
        switch (f) {
        case 1:
            if (wt != 2 || rd_len(&r, &v->s, &v->n)) return NH;
            if (utf8_count(v->s, v->n) < 0) return NH;
            v->type = V_STR;
            break;
        case 2:
            if (wt != 0 || rd_varint(&r, &u)) return NH;
            v->type = V_BOOL;
            v->i = u != 0;
            break;
        case 3:
            if (wt != 0 || rd_varint(&r, &u)) return NH;
            v->type = V_INT;
            v->i = (int64_t)u;
            break;
        case 4:
            if (wt != 1 || rd_fixed64(&r, &u)) return NH;
            v->type = V_DBL;
            memcpy(&v->d, &u, 8);
            break;
        case 5:
        case 6:
            if (wt != 2 || rd_len(&r, &v->s, &v->n)) return NH;
            v->type = f == 5 ? V_ARR : V_KV;
            if (count_entries(v->s, v->n, &v->i)) return NH;
            break;
        case 7:
            if (wt != 2 || rd_len(&r, &v->s, &v->n)) return NH;
            v->type = V_BYTES;
            break;
        default:
            return NH; /* string_value_strindex or a future member of the oneof */
        }
    }
    return 0;
}

static int parse_keyvalue(const uint8_t *p, size_t n, KV *kv) {
    Rd r = {p, p + n};
    int have_value = 0;
    kv->k = (const uint8_t *)"";
    kv->kn = 0;
    kv->v.type = V_NONE;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        const uint8_t *q;
        size_t m;
        if (rd_tag(&r, &f, &wt)) return NH;
        if (f == 1) {
            if (rd_str(&r, wt, &kv->k, &kv->kn)) return NH;
        } else if (f == 2) {
            if (wt != 2 || have_value++ || rd_len(&r, &q, &m)) return NH;
            if (parse_anyvalue(q, m, &kv->v)) return NH;
        } else if (rd_skip(&r, wt)) {
            return NH;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ what the output never shows
   The protobuf runtime (upb) refuses a request with invalid UTF-8 in any string field or a malformed
   sub-message, including fields TEA does not store (schema URLs, scope version and attributes, trace
   state, links, entity refs) and the spans it rejects. These checks make "handled" mean "upb accepts it
   too", so a request the native mapper handles needs no parse by upb first. Anything unusual is "not
   handled": the caller then parses with upb, which refuses it or hands it to the Python path. */
static int chk_str(Rd *r, int wt) {
    const uint8_t *q;
    size_t m;
    return rd_str(r, wt, &q, &m);
}

/* The messages checked, by what upb would check in them: the string fields lo..hi and up to two
   sub-message fields, each of a shape here; `deeper` is how much a sub-message adds to the nesting
   depth (AnyValues nested past MAX_DEPTH are declined, as the mapper declines them when writing). */
enum { C_ANY, C_KV, C_ARRAY, C_KVLIST, C_LINK, C_EVENT, C_ENTITY_REF };
typedef struct {
    uint32_t lo, hi;
    struct { uint32_t field; int shape, deeper; } sub[2];
} Shape;
static const Shape SHAPES[] = {
    [C_ANY] = {1, 1, {{5, C_ARRAY, 1}, {6, C_KVLIST, 1}}},  /* string_value; array_value, kvlist_value */
    [C_KV] = {1, 1, {{2, C_ANY, 1}, {0, 0, 0}}},             /* key; value */
    [C_ARRAY] = {0, 0, {{1, C_ANY, 0}, {0, 0, 0}}},          /* values */
    [C_KVLIST] = {0, 0, {{1, C_KV, 0}, {0, 0, 0}}},          /* values */
    [C_LINK] = {3, 3, {{4, C_KV, 0}, {0, 0, 0}}},            /* trace_state; attributes */
    [C_EVENT] = {2, 2, {{3, C_KV, 0}, {0, 0, 0}}},           /* name; attributes */
    [C_ENTITY_REF] = {1, 4, {{0, 0, 0}, {0, 0, 0}}},         /* schema_url, type, id_keys, description_keys */
};

static int chk(int shape, const uint8_t *p, size_t n, int depth) {
    const Shape *sh = &SHAPES[shape];
    if (shape == C_ANY && depth > MAX_DEPTH) return NH;
    Rd r = {p, p + n};
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        const uint8_t *q;
        size_t m;
        if (rd_tag(&r, &f, &wt)) return NH;
        if (f >= sh->lo && f <= sh->hi) {
            if (chk_str(&r, wt)) return NH;
        } else if (f == sh->sub[0].field || f == sh->sub[1].field) {
            int i = f == sh->sub[0].field ? 0 : 1;
            if (wt != 2 || rd_len(&r, &q, &m) || chk(sh->sub[i].shape, q, m, depth + sh->sub[i].deeper)) return NH;
        } else if (rd_skip(&r, wt)) {
            return NH;
        }
    }
    return 0;
}

/* a sub-message field of that shape */
static int chk_field(Rd *r, int wt, int shape) {
    const uint8_t *q;
    size_t m;
    if (wt != 2 || rd_len(r, &q, &m)) return NH;
    return chk(shape, q, m, 0);
}

static int kv_push(KVVec *vec, const uint8_t *p, size_t n) {
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 64;
        if (cap > ((size_t)1 << 26)) return NH;
        KV *a = PyMem_Realloc(vec->a, cap * sizeof(KV));
        if (!a) return NH;
        vec->a = a;
        vec->cap = cap;
    }
    if (parse_keyvalue(p, n, &vec->a[vec->n])) return NH;
    vec->n++;
    return 0;
}

static uint64_t fnv(const uint8_t *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

/* Any duplicate key in vec[start:]? Python's dicts keep the first position with the last value;
   that case is left to Python. Returns 1 on duplicates (or allocation failure), 0 otherwise. */
static int has_duplicates(KVVec *vec, size_t start) {
    size_t n = vec->n - start;
    if (n < 2) return 0; /* (and vec->a may be NULL: no pointer arithmetic on it) */
    KV *a = vec->a + start;
    if (n <= 16) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (a[i].kn == a[j].kn && memcmp(a[i].k, a[j].k, a[i].kn) == 0) return 1;
        return 0;
    }
    size_t size = 64;
    while (size < 2 * n) size *= 2;
    uint32_t *table = PyMem_Calloc(size, sizeof(uint32_t));
    if (!table) return 1;
    int dup = 0;
    for (size_t i = 0; i < n && !dup; i++) {
        size_t h = (size_t)fnv(a[i].k, a[i].kn) & (size - 1);
        while (table[h]) {
            KV *o = &a[table[h] - 1];
            if (o->kn == a[i].kn && memcmp(o->k, a[i].k, a[i].kn) == 0) {
                dup = 1;
                break;
            }
            h = (h + 1) & (size - 1);
        }
        table[h] = (uint32_t)(i + 1);
    }
    PyMem_Free(table);
    return dup;
}

static int find(KVVec *vec, size_t start, size_t end, const char *key, Val **out) {
    size_t kn = strlen(key);
    for (size_t i = start; i < end; i++) {
        KV *kv = &vec->a[i];
        if (kv->kn == kn && memcmp(kv->k, key, kn) == 0) {
            *out = &kv->v;
            return 1;
        }
    }
    *out = NULL;
    return 0;
}

/* attrs.get(key): NULL for a missing key or a None value */
static Val *get(KVVec *vec, size_t start, size_t end, const char *key) {
    Val *v;
    find(vec, start, end, key, &v);
    return v && v->type != V_NONE ? v : NULL;
}

static int truthy(const Val *v) {
    if (!v) return 0;
    switch (v->type) {
    case V_STR: case V_BYTES: return v->n > 0;
    case V_BOOL: case V_INT: case V_ARR: case V_KV: return v->i != 0;
    case V_DBL: return v->d != 0.0;
    default: return 0;
    }
}

static Val *or2(Val *a, Val *b) { return truthy(a) ? a : b; }

/* Python's str(value) (also format(value, "")): strings, ints, bools, bytes (already base64 text);
   floats, lists and dicts are left to Python. */
static int put_str_of(Buf *b, const Val *v) {
    switch (v->type) {
    case V_STR: return put(b, v->s, v->n);
    case V_BYTES: return put_b64(b, v->s, v->n);
    case V_INT: return put_i64(b, v->i);
    case V_BOOL: return v->i ? PUTS(b, "True") : PUTS(b, "False");
    default: return NH;
    }
}

static int write_value(Buf *b, KVVec *vec, const Val *v, int depth);

static int write_object(Buf *b, KVVec *vec, size_t start, int depth) {
    if (has_duplicates(vec, start)) return NH;
    if (putch(b, '{')) return NH;
    for (size_t i = start; i < vec->n; i++) {
        if (i > start && putch(b, ',')) return NH;
        KV *kv = &vec->a[i];
        if (put_json_str_valid(b, kv->k, kv->kn) || putch(b, ':')) return NH;
        Val v = kv->v; /* vec may move while writing nested values */
        if (write_value(b, vec, &v, depth)) return NH;
    }
    return putch(b, '}');
}

static int write_value(Buf *b, KVVec *vec, const Val *v, int depth) {
    switch (v->type) {
    case V_NONE: return PUTS(b, "null");
    case V_STR: return put_json_str_valid(b, v->s, v->n);
    case V_BOOL: return v->i ? PUTS(b, "true") : PUTS(b, "false");
    case V_INT: return put_i64(b, v->i);
    case V_DBL: return put_double(b, v->d);
    case V_BYTES:
        if (putch(b, '"') || put_b64(b, v->s, v->n)) return NH;
        return putch(b, '"');
    case V_ARR:
    case V_KV: {
        if (depth >= MAX_DEPTH) return NH;
        Rd r = {v->s, v->s + v->n};
        size_t start = vec->n;
        int first = 1, rc = 0;
        if (v->type == V_ARR && putch(b, '[')) return NH;
        while (r.p < r.end && !rc) {
            uint32_t f;
            int wt;
            const uint8_t *q;
            size_t m;
            if (rd_tag(&r, &f, &wt)) { rc = NH; break; }
            if (f != 1) {
                rc = rd_skip(&r, wt);
                continue;
            }
            if (wt != 2 || rd_len(&r, &q, &m)) { rc = NH; break; }
            if (v->type == V_ARR) {
                Val item;
                if (parse_anyvalue(q, m, &item)) { rc = NH; break; }
                if (!first) rc |= putch(b, ',');
                first = 0;
                rc |= write_value(b, vec, &item, depth + 1);
            } else {
                rc = kv_push(vec, q, m);
            }
        }
        if (!rc) {
            if (v->type == V_ARR) rc = putch(b, ']');
            else rc = write_object(b, vec, start, depth + 1);
        }
        vec->n = start;
        return rc;
    }
    default: return NH;
    }
}

/* ------------------------------------------------------------------ the request */
typedef struct {
    KVVec vec;
    Buf out, resource, scratch;
    PyObject *rejections;
    /* inputs */
    int tenant_from_resource;
    const char *default_tenant, *only_tenant, *source_protocol;
    Py_ssize_t default_tenant_n, only_tenant_n, source_protocol_n;
    uint64_t now, latest, max_us;
    PyObject *price; /* tea.pricing.PriceTable.lookup, or None */
    PyObject *ident; /* metrics: tea.receive.otlp_signals.point_id */
    Buf pay;         /* metrics: one data point's payload (its event's attributes) */
    /* per resource */
    int has_source, has_tenant;
    Buf source, tenant;
    /* per span: the texts of the tool and model columns */
    Buf tool, model;
    /* results */
    Py_ssize_t total, accepted;
    uint64_t low, high;
} Ctx;

static const char *KINDS[] = {"unspecified", "internal", "server", "client", "producer", "consumer"};

/* ------------------------------------------------------------------ MCP and GenAI conventions (tea.semconv) */
/* jsonrpc_code: rpc.jsonrpc.error_code as an int32, else rpc.response.status_code or error.type written as
   '-' and 1 to 9 ASCII digits. 1 found (in *out), 0 none. */
static int jsonrpc_code(KVVec *vec, size_t a0, size_t a1, int64_t *out) {
    static const char *keys[] = {"rpc.jsonrpc.error_code", "rpc.response.status_code", "error.type"};
    for (int k = 0; k < 3; k++) {
        Val *v = get(vec, a0, a1, keys[k]);
        if (!v) continue;
        if (k == 0 && v->type == V_INT && v->i >= -2147483648LL && v->i <= 2147483647LL) {
            *out = v->i;
            return 1;
        }
        if (v->type == V_STR && v->n >= 2 && v->n <= 10 && v->s[0] == '-') {
            int64_t x = 0;
            size_t i = 1;
            for (; i < v->n && v->s[i] >= '0' && v->s[i] <= '9'; i++) x = x * 10 + (v->s[i] - '0');
            if (i == v->n) {
                *out = -x;
                return 1;
            }
        }
    }
    return 0;
}

/* token_count of an int: itself when >= 0 (floats never get here: the span is left to Python) */
static int token_count(const Val *v, int64_t *out) {
    if (!v || v->type != V_INT || v->i < 0) return 0;
    *out = v->i;
    return 1;
}

/* text(value) into `into`: str(value)[:1024]; 0 when the value is None (nothing written) */
static int text_of(Buf *into, const Val *v, int *present) {
    into->len = 0;
    *present = v != NULL;
    if (!v) return 0;
    if (put_str_of(into, v)) return NH;
    into->len = utf8_prefix((const uint8_t *)into->p, into->len, 1024);
    return 0;
}

/* PriceTable.cost: the same float operations in the same order. 1 priced (in *cost), 0 not, NH on error. */
static int price_of(Ctx *c, int has_in, int64_t in, int has_out, int64_t out, double *cost) {
    if (c->price == Py_None || (!has_in && !has_out)) return 0;
    PyObject *name = PyUnicode_DecodeUTF8(c->model.p ? c->model.p : "", (Py_ssize_t)c->model.len, "strict");
    if (!name) return NH;
    PyObject *found = PyObject_CallOneArg(c->price, name);
    Py_DECREF(name);
    if (!found) return NH;
    int rc = 0;
    if (found == Py_None) {
        rc = 0;
    } else if (PyTuple_Check(found) && PyTuple_GET_SIZE(found) == 2 && PyFloat_CheckExact(PyTuple_GET_ITEM(found, 0)) &&
               PyFloat_CheckExact(PyTuple_GET_ITEM(found, 1))) {
        double total = 0.0;
        if (has_in) total += (double)in * PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(found, 0)) / 1000;
        if (has_out) total += (double)out * PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(found, 1)) / 1000;
        *cost = total;
        rc = 1;
    } else {
        rc = NH;
    }
    Py_DECREF(found);
    return rc;
}

static int add_rejection(Ctx *c, Py_ssize_t index, const char *code, const Buf *event_id, PyObject *detail) {
    if (!detail) return NH;
    PyObject *eid = PyUnicode_DecodeUTF8(event_id->p, (Py_ssize_t)event_id->len, "strict");
    if (!eid) {
        Py_DECREF(detail);
        return NH;
    }
    PyObject *t = Py_BuildValue("(nsNN)", index, code, eid, detail);
    if (!t) return NH;
    int rc = PyList_Append(c->rejections, t);
    Py_DECREF(t);
    return rc ? NH : 0;
}

/* the members of a Span a span event needs */
typedef struct {
    const uint8_t *trace_id, *span_id, *parent, *name, *status_message;
    size_t trace_id_n, span_id_n, parent_n, name_n, status_message_n;
    int32_t kind, status_code;
    uint64_t start, end;
    size_t attrs_start, attrs_end;
    const uint8_t **events;
    size_t *events_n;
    size_t n_events, cap_events;
} Span;

static int parse_status(Span *s, const uint8_t *p, size_t n) {
    Rd r = {p, p + n};
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        uint64_t u;
        if (rd_tag(&r, &f, &wt)) return NH;
        if (f == 2) {
            if (rd_str(&r, wt, &s->status_message, &s->status_message_n)) return NH;
        } else if (f == 3) {
            if (wt != 0 || rd_varint(&r, &u)) return NH;
            s->status_code = (int32_t)(uint32_t)u;
        } else if (rd_skip(&r, wt)) {
            return NH;
        }
    }
    return 0;
}

static int write_span_events(Ctx *c, Span *s) {
    Buf *b = &c->out;
    if (PUTS(b, ",\"span.events\":[")) return NH;
    for (size_t e = 0; e < s->n_events; e++) {
        Rd r = {s->events[e], s->events[e] + s->events_n[e]};
        const uint8_t *name = (const uint8_t *)"";
        size_t name_n = 0;
        uint64_t t = 0;
        size_t start = c->vec.n;
        while (r.p < r.end) {
            uint32_t f;
            int wt;
            const uint8_t *q;
            size_t m;
            if (rd_tag(&r, &f, &wt)) return NH;
            if (f == 1) {
                if (wt != 1 || rd_fixed64(&r, &t)) return NH;
            } else if (f == 2) {
                if (rd_str(&r, wt, &name, &name_n)) return NH;
            } else if (f == 3) {
                if (wt != 2 || rd_len(&r, &q, &m) || kv_push(&c->vec, q, m)) return NH;
            } else if (rd_skip(&r, wt)) {
                return NH;
            }
        }
        Val *dummy;
        if (find(&c->vec, start, c->vec.n, "name", &dummy) || find(&c->vec, start, c->vec.n, "time_unix_nano", &dummy))
            return NH; /* {"name": ..., **attrs} would overwrite in place */
        if (e && putch(b, ',')) return NH;
        if (PUTS(b, "{\"name\":") || put_json_str_valid(b, name, name_n) || PUTS(b, ",\"time_unix_nano\":") ||
            put_u64(b, t))
            return NH;
        if (c->vec.n > start) {
            /* write_object writes "{...}": splice its members after ours */
            size_t mark = b->len;
            if (write_object(b, &c->vec, start, 0)) return NH;
            /* replace the '{' at mark by ',' */
            b->p[mark] = ',';
            b->len--; /* drop the closing '}' */
        }
        if (putch(b, '}')) return NH;
        c->vec.n = start;
    }
    return putch(b, ']');
}

/* A rejected span's line is never written: what writing it would have checked (nested attribute values,
   the events), so that a rejection is never made of a request upb would refuse. */
static int chk_unwritten(const KVVec *vec, size_t a0, size_t a1, const Span *s) {
    for (size_t i = a0; i < a1; i++) {
        const Val *v = &vec->a[i].v;
        if ((v->type == V_ARR || v->type == V_KV) && chk(v->type == V_KV ? C_KVLIST : C_ARRAY, v->s, v->n, 1))
            return NH;
    }
    for (size_t e = 0; e < s->n_events; e++)
        if (chk(C_EVENT, s->events[e], s->events_n[e], 0)) return NH;
    return 0;
}

/* One span -> one NDJSON line (or a rejection). */
static int do_span(Ctx *c, const uint8_t *p, size_t n, const Buf *scope_name) {
    Span s;
    memset(&s, 0, sizeof s);
    s.trace_id = s.span_id = s.parent = s.name = s.status_message = (const uint8_t *)"";
    const uint8_t *evs_local[16];
    size_t evn_local[16];
    s.events = evs_local;
    s.events_n = evn_local;
    s.cap_events = 16;
    int rc = 0, have_status = 0;
    const uint8_t **evs_heap = NULL;
    size_t *evn_heap = NULL;
    s.attrs_start = c->vec.n;
    Rd r = {p, p + n};
    Py_ssize_t index = c->total++;

    while (r.p < r.end) {
        uint32_t f;
        int wt;
        uint64_t u;
        const uint8_t *q;
        size_t m;
        if (rd_tag(&r, &f, &wt)) goto nh;
        switch (f) {
        case 1: if (wt != 2 || rd_len(&r, &s.trace_id, &s.trace_id_n)) goto nh; break;
        case 2: if (wt != 2 || rd_len(&r, &s.span_id, &s.span_id_n)) goto nh; break;
        case 4: if (wt != 2 || rd_len(&r, &s.parent, &s.parent_n)) goto nh; break;
        case 5: if (rd_str(&r, wt, &s.name, &s.name_n)) goto nh; break;
        case 6: if (wt != 0 || rd_varint(&r, &u)) goto nh; s.kind = (int32_t)(uint32_t)u; break;
        case 7: if (wt != 1 || rd_fixed64(&r, &s.start)) goto nh; break;
        case 8: if (wt != 1 || rd_fixed64(&r, &s.end)) goto nh; break;
        case 9:
            if (wt != 2 || rd_len(&r, &q, &m) || kv_push(&c->vec, q, m)) goto nh;
            break;
        case 11:
            if (wt != 2 || rd_len(&r, &q, &m)) goto nh;
            if (s.n_events == s.cap_events) {
                size_t cap = s.cap_events * 2;
                if (cap > ((size_t)1 << 24)) goto nh;
                const uint8_t **a = PyMem_Malloc(cap * sizeof(*a));
                size_t *an = PyMem_Malloc(cap * sizeof(*an));
                if (!a || !an) { PyMem_Free(a); PyMem_Free(an); goto nh; }
                memcpy(a, s.events, s.n_events * sizeof(*a));
                memcpy(an, s.events_n, s.n_events * sizeof(*an));
                PyMem_Free(evs_heap);
                PyMem_Free(evn_heap);
                s.events = evs_heap = a;
                s.events_n = evn_heap = an;
                s.cap_events = cap;
            }
            s.events[s.n_events] = q;
            s.events_n[s.n_events++] = m;
            break;
        case 15:
            if (wt != 2 || have_status++ || rd_len(&r, &q, &m) || parse_status(&s, q, m)) goto nh;
            break;
        case 3: /* trace_state: not stored, but a string upb checks */
            if (chk_str(&r, wt)) goto nh;
            break;
        case 13: /* links: not stored; trace_state (3) and attributes (4) checked */
            if (chk_field(&r, wt, C_LINK)) goto nh;
            break;
        default:
            if (rd_skip(&r, wt)) goto nh;
        }
    }
    s.attrs_end = c->vec.n;
    if (!s.trace_id_n || !s.span_id_n) goto nh; /* the event id would be a random UUIDv7 */
    KVVec *vec = &c->vec;
    size_t a0 = s.attrs_start, a1 = s.attrs_end;
    if (has_duplicates(vec, a0)) goto nh;
    {
        Val *dummy;
        if (find(vec, a0, a1, "span.name", &dummy) || find(vec, a0, a1, "span.kind", &dummy) ||
            find(vec, a0, a1, "scope", &dummy) || find(vec, a0, a1, "span.events", &dummy))
            goto nh; /* overwritten in place by pb_spans */
    }

    /* normalise: timestamp, skew, tenant */
    uint64_t us = s.start / 1000;
    Buf *eid = &c->scratch;
    eid->len = 0;
    if (buf_grow(eid, 2 * (s.trace_id_n + s.span_id_n))) goto nh;
    for (size_t i = 0; i < s.trace_id_n; i++) {
        eid->p[eid->len++] = HEX[s.trace_id[i] >> 4];
        eid->p[eid->len++] = HEX[s.trace_id[i] & 15];
    }
    for (size_t i = 0; i < s.span_id_n; i++) {
        eid->p[eid->len++] = HEX[s.span_id[i] >> 4];
        eid->p[eid->len++] = HEX[s.span_id[i] & 15];
    }
    if (us > c->max_us) {
        if (add_rejection(c, index, "invalid_timestamp", eid, PyLong_FromUnsignedLongLong(us))) goto nh;
        goto rejected;
    }
    if (us > c->latest) {
        if (add_rejection(c, index, "clock_skew", eid, PyLong_FromUnsignedLongLong(us))) goto nh;
        goto rejected;
    }
    if (c->tenant_from_resource && c->has_tenant) {
        if ((c->tenant.len && c->tenant.p[0] == '_') ||
            (c->only_tenant && ((size_t)c->only_tenant_n != c->tenant.len ||
                                memcmp(c->only_tenant, c->tenant.p, c->tenant.len)))) {
            if (add_rejection(c, index, "forbidden_tenant", eid,
                              PyUnicode_DecodeUTF8(c->tenant.p, (Py_ssize_t)c->tenant.len, "strict")))
                goto nh;
            goto rejected;
        }
    }

    /* semantic conventions, as span_event */
    Val *http_method = or2(get(vec, a0, a1, "http.request.method"), get(vec, a0, a1, "http.method"));
    Val *route = or2(or2(get(vec, a0, a1, "http.route"), get(vec, a0, a1, "url.path")),
                     get(vec, a0, a1, "http.target"));
    Val *mcp = or2(get(vec, a0, a1, "mcp.method.name"), get(vec, a0, a1, "gen_ai.tool.name"));
    Val *code;
    if (!find(vec, a0, a1, "http.response.status_code", &code) && !find(vec, a0, a1, "http.status_code", &code))
        find(vec, a0, a1, "rpc.grpc.status_code", &code);
    Val *t_in = get(vec, a0, a1, "gen_ai.usage.input_tokens");
    Val *t_out = get(vec, a0, a1, "gen_ai.usage.output_tokens");
    Val *user = or2(get(vec, a0, a1, "enduser.id"), get(vec, a0, a1, "user.id"));
    Val *session = or2(get(vec, a0, a1, "mcp.session.id"), get(vec, a0, a1, "session.id"));
    Val *error_type = get(vec, a0, a1, "error.type");
    int64_t jsonrpc = 0, n_in = 0, n_out = 0;
    int has_jsonrpc = jsonrpc_code(vec, a0, a1, &jsonrpc);
    int has_tool, has_model, has_in = token_count(t_in, &n_in), has_out = token_count(t_out, &n_out);
    if (text_of(&c->tool, get(vec, a0, a1, "gen_ai.tool.name"), &has_tool) ||
        text_of(&c->model, or2(get(vec, a0, a1, "gen_ai.request.model"), get(vec, a0, a1, "gen_ai.response.model")),
                &has_model))
        goto nh;

    Buf *b = &c->out;
    size_t line_start = b->len;
    if (PUTS(b, "{\"event_type\":\"span\",\"event_id\":\"") || put(b, eid->p, eid->len) ||
        PUTS(b, "\",\"tenant_id\":"))
        goto nh;
    if (c->tenant_from_resource && c->has_tenant) {
        if (put_json_str_valid(b, (const uint8_t *)c->tenant.p, c->tenant.len)) goto nh;
    } else if (put_json_str_valid(b, (const uint8_t *)c->default_tenant, (size_t)c->default_tenant_n)) {
        goto nh;
    }
    if (PUTS(b, ",\"timestamp\":") || put_u64(b, us) || PUTS(b, ",\"received_at\":") || put_u64(b, c->now))
        goto nh;
    if (c->has_source &&
        (PUTS(b, ",\"source\":") || put_json_str_valid(b, (const uint8_t *)c->source.p, c->source.len)))
        goto nh;
    if (PUTS(b, ",\"source_protocol\":") ||
        put_json_str_valid(b, (const uint8_t *)c->source_protocol, (size_t)c->source_protocol_n))
        goto nh;

    /* _str(value): None stays None, else str(value)[:1024] */
#define PUT_STR_FIELD(label, val)                                                        \
    if (val) {                                                                           \
        Buf *t = &c->scratch;                                                            \
        t->len = 0;                                                                      \
        if (put_str_of(t, val)) goto nh;                                                 \
        size_t keep = utf8_prefix((const uint8_t *)t->p, t->len, 1024);                  \
        if (PUTS(b, label) || put_json_str_valid(b, (const uint8_t *)t->p, keep)) goto nh; \
    }
    PUT_STR_FIELD(",\"user_id\":", user)
    PUT_STR_FIELD(",\"session_id\":", session)

    /* method, protocol */
    {
        Buf *t = &c->scratch;
        t->len = 0;
        const char *protocol = NULL;
        if (truthy(mcp)) {
            if (put_str_of(t, mcp)) goto nh;
            protocol = "mcp";
        } else if (truthy(http_method)) {
            if (put_str_of(t, http_method)) goto nh;
            if (truthy(route) && (putch(t, ' ') || put_str_of(t, route))) goto nh;
            protocol = "http";
        } else {
            if (put(t, s.name, s.name_n)) goto nh;
            Val *rpc = get(vec, a0, a1, "rpc.system");
            if (rpc && rpc->type == V_STR && rpc->n == 4 && memcmp(rpc->s, "grpc", 4) == 0) protocol = "grpc";
        }
        size_t keep = utf8_prefix((const uint8_t *)t->p, t->len, 1024);
        if (PUTS(b, ",\"method\":") || put_json_str_valid(b, (const uint8_t *)t->p, keep)) goto nh;
        if (protocol) {
            if (PUTS(b, ",\"protocol\":\"") || put(b, protocol, strlen(protocol)) || putch(b, '"')) goto nh;
        }
    }
    if (s.status_code == 1 && PUTS(b, ",\"status\":\"ok\"")) goto nh;
    if ((s.status_code == 2 || (s.status_code != 1 && has_jsonrpc)) && PUTS(b, ",\"status\":\"error\"")) goto nh;
    /* an integer status code the INTEGER column holds (else the JSON-RPC code, if any; the attribute keeps it) */
    int code_ok = code && code->type == V_INT && code->i >= INT32_MIN && code->i <= INT32_MAX;
    if (code_ok && (PUTS(b, ",\"status_code\":") || put_i64(b, code->i))) goto nh;
    if (!code_ok && has_jsonrpc &&
        (PUTS(b, ",\"status_code\":") || put_i64(b, jsonrpc)))
        goto nh;
    {
        uint64_t diff = s.end > s.start ? s.end - s.start : 0;
        if (PUTS(b, ",\"duration_ms\":") || put_double(b, (double)diff / 1e6)) goto nh;
    }
    if (t_in || t_out) {
        int64_t sum = 0;
        Val *ts[2] = {t_in, t_out};
        for (int i = 0; i < 2; i++) {
            if (!ts[i]) continue;
            if (ts[i]->type == V_DBL) goto nh; /* int(float): left to Python */
            /* what is no count (text, a boolean, a negative number) counts 0; past int64: left to Python */
            if (ts[i]->type == V_INT && ts[i]->i >= 0 && __builtin_add_overflow(sum, ts[i]->i, &sum)) goto nh;
        }
        if (PUTS(b, ",\"tokens_used\":") || put_i64(b, sum)) goto nh;
    }
    if (has_model) {
        double cost = 0.0;
        int priced = price_of(c, has_in, n_in, has_out, n_out, &cost);
        if (priced < 0 || (priced && (PUTS(b, ",\"cost\":") || put_double(b, cost)))) goto nh;
    }
    PUT_STR_FIELD(",\"error_type\":", error_type)
#undef PUT_STR_FIELD
    if (s.status_message_n &&
        (PUTS(b, ",\"error_message\":") || put_json_str_valid(b, s.status_message, s.status_message_n)))
        goto nh;
    if (PUTS(b, ",\"trace_id\":") || put_hex_str(b, s.trace_id, s.trace_id_n) || PUTS(b, ",\"span_id\":") ||
        put_hex_str(b, s.span_id, s.span_id_n))
        goto nh;
    if (s.parent_n && (PUTS(b, ",\"parent_span_id\":") || put_hex_str(b, s.parent, s.parent_n))) goto nh;

    /* attributes: the span's own, span.name, span.kind, scope, span.events, then the resource */
    if (PUTS(b, ",\"attributes\":")) goto nh;
    {
        size_t mark = b->len;
        /* write_object consumes nothing but reads vec[a0:]: the span attrs are the top of vec */
        if (write_object(b, vec, a0, 0)) goto nh;
        b->len--; /* drop '}' */
        if (b->len > mark + 1 && putch(b, ',')) goto nh;
    }
    if (PUTS(b, "\"span.name\":") || put_json_str_valid(b, s.name, s.name_n) || PUTS(b, ",\"span.kind\":"))
        goto nh;
    if (s.kind >= 0 && s.kind < 6) {
        if (putch(b, '"') || put(b, KINDS[s.kind], strlen(KINDS[s.kind])) || putch(b, '"')) goto nh;
    } else if (putch(b, '"') || put_i64(b, s.kind) || putch(b, '"')) {
        goto nh;
    }
    if (scope_name->len && (PUTS(b, ",\"scope\":") || put_json_str_valid(b, (const uint8_t *)scope_name->p, scope_name->len)))
        goto nh;
    c->vec.n = a1;
    if (s.n_events && write_span_events(c, &s)) goto nh;
    if (PUTS(b, ",\"resource\":") || put(b, c->resource.p, c->resource.len) || putch(b, '}')) goto nh;
    if (has_tool && (PUTS(b, ",\"tool\":") || put_json_str_valid(b, (const uint8_t *)c->tool.p, c->tool.len))) goto nh;
    if (has_model && (PUTS(b, ",\"model\":") || put_json_str_valid(b, (const uint8_t *)c->model.p, c->model.len)))
        goto nh;
    if (has_in && (PUTS(b, ",\"input_tokens\":") || put_i64(b, n_in))) goto nh;
    if (has_out && (PUTS(b, ",\"output_tokens\":") || put_i64(b, n_out))) goto nh;
    if (PUTS(b, "}\n")) goto nh;
    (void)line_start;
    c->accepted++;
    if (us < c->low) c->low = us;
    if (us > c->high) c->high = us;
done:
    c->vec.n = s.attrs_start;
    PyMem_Free(evs_heap);
    PyMem_Free(evn_heap);
    return rc;
rejected:
    if (chk_unwritten(&c->vec, s.attrs_start, s.attrs_end, &s)) goto nh;
    goto done;
nh:
    c->vec.n = s.attrs_start;
    PyMem_Free(evs_heap);
    PyMem_Free(evn_heap);
    return NH;
}

/* one span or one metric of a scope, with the scope's name */
typedef int (*Item)(Ctx *c, const uint8_t *p, size_t n, const Buf *scope_name);

/* ScopeSpans and ScopeMetrics have one layout: scope (1), the items (2), schema_url (3) */
static int do_scope(Ctx *c, const uint8_t *p, size_t n, Item item) {
    Rd r = {p, p + n};
    const uint8_t *scope = NULL;
    size_t scope_n = 0;
    int have_scope = 0;
    while (r.p < r.end) { /* first pass: the scope, wherever it is */
        uint32_t f;
        int wt;
        const uint8_t *q;
        size_t m;
        if (rd_tag(&r, &f, &wt)) return NH;
        if (f == 1) {
            if (wt != 2 || have_scope++ || rd_len(&r, &q, &m)) return NH;
            scope = q;
            scope_n = m;
        } else if (f == 2) {
            if (wt != 2 || rd_len(&r, &q, &m)) return NH;
        } else if (f == 3) { /* schema_url */
            if (chk_str(&r, wt)) return NH;
        } else if (rd_skip(&r, wt)) {
            return NH;
        }
    }
    Buf name = {NULL, 0, 0};
    if (scope) {
        Rd s = {scope, scope + scope_n};
        const uint8_t *nm = NULL;
        size_t nm_n = 0;
        while (s.p < s.end) {
            uint32_t f;
            int wt;
            if (rd_tag(&s, &f, &wt)) return NH;
            if (f == 1) {
                if (rd_str(&s, wt, &nm, &nm_n)) return NH;
            } else if (f == 2) { /* version: not stored, but checked as upb does */
                if (chk_str(&s, wt)) return NH;
            } else if (f == 3) { /* attributes: not stored */
                if (chk_field(&s, wt, C_KV)) return NH;
            } else if (rd_skip(&s, wt)) {
                return NH;
            }
        }
        if (nm_n) {
            name.p = (char *)nm; /* borrowed: never written to or freed */
            name.len = nm_n;
        }
    }
    r.p = p;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        const uint8_t *q;
        size_t m;
        if (rd_tag(&r, &f, &wt)) return NH;
        if (f == 2) {
            if (rd_len(&r, &q, &m) || item(c, q, m, &name)) return NH;
        } else if (rd_skip(&r, wt)) {
            return NH;
        }
    }
    return 0;
}

/* ResourceSpans and ResourceMetrics have one layout: resource (1), the scopes (2), schema_url (3) */
static int do_resource(Ctx *c, const uint8_t *p, size_t n, Item item) {
    Rd r = {p, p + n};
    const uint8_t *res = NULL;
    size_t res_n = 0;
    int have_res = 0;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        const uint8_t *q;
        size_t m;
        if (rd_tag(&r, &f, &wt)) return NH;
        if (f == 1) {
            if (wt != 2 || have_res++ || rd_len(&r, &q, &m)) return NH;
            res = q;
            res_n = m;
        } else if (f == 2) {
            if (wt != 2 || rd_len(&r, &q, &m)) return NH;
        } else if (f == 3) { /* schema_url */
            if (chk_str(&r, wt)) return NH;
        } else if (rd_skip(&r, wt)) {
            return NH;
        }
    }
    /* the resource's attributes, encoded once, and service.name / tenant.id */
    size_t start = c->vec.n;
    if (res) {
        Rd s = {res, res + res_n};
        while (s.p < s.end) {
            uint32_t f;
            int wt;
            const uint8_t *q;
            size_t m;
            if (rd_tag(&s, &f, &wt)) return NH;
            if (f == 1) {
                if (wt != 2 || rd_len(&s, &q, &m) || kv_push(&c->vec, q, m)) return NH;
            } else if (f == 3) { /* entity_refs: not stored; four string fields */
                if (chk_field(&s, wt, C_ENTITY_REF)) return NH;
            } else if (rd_skip(&s, wt)) {
                return NH;
            }
        }
    }
    size_t end = c->vec.n;
    c->resource.len = 0;
    if (write_object(&c->resource, &c->vec, start, 0)) return NH;
    Val *service = get(&c->vec, start, end, "service.name");
    c->has_source = service != NULL;
    c->source.len = 0;
    if (service) {
        Buf *t = &c->scratch;
        t->len = 0;
        if (put_str_of(t, service)) return NH;
        size_t keep = utf8_prefix((const uint8_t *)t->p, t->len, 1024);
        if (put(&c->source, t->p, keep)) return NH;
    }
    c->has_tenant = 0;
    c->tenant.len = 0;
    if (c->tenant_from_resource) {
        Val *tenant = get(&c->vec, start, end, "tenant.id");
        if (truthy(tenant)) {
            Buf *t = &c->scratch;
            t->len = 0;
            if (put_str_of(t, tenant)) return NH;
            size_t keep = utf8_prefix((const uint8_t *)t->p, t->len, 256);
            if (put(&c->tenant, t->p, keep)) return NH;
            c->has_tenant = 1;
        }
    }
    c->vec.n = start;
    r.p = p;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        const uint8_t *q;
        size_t m;
        if (rd_tag(&r, &f, &wt)) return NH;
        if (f == 2) {
            if (rd_len(&r, &q, &m) || do_scope(c, q, m, item)) return NH;
        } else if (rd_skip(&r, wt)) {
            return NH;
        }
    }
    return 0;
}

static int do_request(Ctx *c, const uint8_t *p, size_t n, Item item) {
    Rd r = {p, p + n};
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        const uint8_t *q;
        size_t m;
        if (rd_tag(&r, &f, &wt)) return NH;
        if (f == 1) {
            if (wt != 2 || rd_len(&r, &q, &m) || do_resource(c, q, m, item)) return NH;
        } else if (rd_skip(&r, wt)) {
            return NH;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ metrics (map_metrics)
   One data point -> one `metric` event line, exactly as tea.receive.otlp_signals.pb_metrics + the
   Normaliser + encode_lines write it: the payload {"metric": MetricData, "attributes", "resource",
   "scope"} (tea.signals.model), the event id point_id(payload + "\0" + time in ns), tenant and time checks
   as for spans. Packed repeated fields only (what exporters send), no exemplars or metadata: anything else
   is left to Python. */
enum { K_GAUGE, K_SUM, K_HIST, K_EXP, K_SUMMARY };
static const char *KIND_NAMES[] = {"gauge", "sum", "histogram", "exponential_histogram", "summary"};
/* the field numbers of each data point kind: attributes, exemplars, flags */
static const uint32_t F_ATTRS[] = {7, 7, 9, 1, 7}, F_EXEMPLARS[] = {5, 5, 8, 11, 0}, F_FLAGS[] = {8, 8, 10, 10, 8};

typedef struct {
    const uint8_t *name, *unit;
    size_t name_n, unit_n;
    int kind;
    uint64_t temporality, monotonic;
} Metric;

typedef struct {
    uint64_t start, time, count, zero_count, flags, value_bits, sum_bits, min_bits, max_bits;
    int value_kind; /* 0 none, 1 as_double, 2 as_int */
    int has_sum, has_min, has_max;
    int64_t scale;
    const uint8_t *bounds, *counts, *pos, *neg;
    size_t bounds_n, counts_n, pos_n, neg_n;
} Point;

static double bits_double(uint64_t u) {
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* a sint32 as upb reads it: the varint cut to 32 bits, then zigzag-decoded (cutting after decoding differs
   when bit 32 is set) */
static int32_t zigzag32(uint64_t u) {
    uint32_t v = (uint32_t)u;
    return (int32_t)(v >> 1) ^ -(int32_t)(v & 1);
}

/* a packed repeated 8-byte field (fixed64, double): one occurrence */
static int rd_packed8(Rd *r, int wt, const uint8_t **p, size_t *n) {
    if (wt != 2 || *p || rd_len(r, p, n) || *n % 8) return NH;
    return 0;
}

static int put_packed8(Buf *b, const uint8_t *p, size_t n, int doubles) {
    if (putch(b, '[')) return NH;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t u = 0;
        for (int k = 7; k >= 0; k--) u = (u << 8) | p[i + (size_t)k];
        if (i && putch(b, ',')) return NH;
        if (doubles ? put_double(b, bits_double(u)) : put_u64(b, u)) return NH;
    }
    return putch(b, ']');
}

/* Buckets of an exponential histogram: offset (sint32), packed uint64 counts; writes ,"<side>_offset":..
   ,"<side>_counts":[..] */
static int put_buckets(Buf *b, const uint8_t *p, size_t n, const char *side) {
    int64_t offset = 0;
    const uint8_t *counts = NULL;
    size_t counts_n = 0;
    Rd r = {p, p ? p + n : p}; /* (p and counts are NULL when the point has no such buckets: no NULL + 0) */
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        uint64_t u;
        if (rd_tag(&r, &f, &wt)) return NH;
        if (f == 1) {
            if (wt != 0 || rd_varint(&r, &u)) return NH;
            offset = zigzag32(u);
        } else if (f == 2) {
            if (wt != 2 || counts || rd_len(&r, &counts, &counts_n)) return NH;
        } else if (rd_skip(&r, wt)) {
            return NH;
        }
    }
    if (putch(b, ',') || putch(b, '"') || put(b, side, strlen(side)) || PUTS(b, "_offset\":") ||
        put_i64(b, offset) || putch(b, ',') || putch(b, '"') || put(b, side, strlen(side)) || PUTS(b, "_counts\":["))
        return NH;
    Rd c = {counts, counts ? counts + counts_n : counts};
    for (int first = 1; counts && c.p < c.end; first = 0) {
        uint64_t u;
        if (rd_varint(&c, &u) || (!first && putch(b, ',')) || put_u64(b, u)) return NH;
    }
    return putch(b, ']');
}

/* summary quantiles: every quantile_values (6) of the point, as [[q,v],...] */
static int put_quantiles(Buf *b, const uint8_t *p, size_t n) {
    if (PUTS(b, ",\"quantiles\":[")) return NH;
    Rd r = {p, p + n};
    int first = 1;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        const uint8_t *q;
        size_t m;
        if (rd_tag(&r, &f, &wt)) return NH;
        if (f != 6) {
            if (rd_skip(&r, wt)) return NH;
            continue;
        }
        if (wt != 2 || rd_len(&r, &q, &m)) return NH;
        uint64_t qv[3] = {0, 0, 0};
        Rd s = {q, q + m};
        while (s.p < s.end) {
            uint32_t g;
            int wt2;
            if (rd_tag(&s, &g, &wt2)) return NH;
            if (g == 1 || g == 2) {
                if (wt2 != 1 || rd_fixed64(&s, &qv[g])) return NH;
            } else if (rd_skip(&s, wt2)) {
                return NH;
            }
        }
        if ((!first && putch(b, ',')) || putch(b, '[') || put_double(b, bits_double(qv[1])) || putch(b, ',') ||
            put_double(b, bits_double(qv[2])) || putch(b, ']'))
            return NH;
        first = 0;
    }
    return putch(b, ']');
}

static int parse_point(Ctx *c, const Metric *mt, const uint8_t *p, size_t n, Point *pt) {
    int k = mt->kind;
    Rd r = {p, p + n};
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        uint64_t u;
        const uint8_t *q;
        size_t m;
        if (rd_tag(&r, &f, &wt)) return NH;
        if (f == F_ATTRS[k]) {
            if (wt != 2 || rd_len(&r, &q, &m) || kv_push(&c->vec, q, m)) return NH;
        } else if (f == 2 || f == 3) {
            if (wt != 1 || rd_fixed64(&r, f == 2 ? &pt->start : &pt->time)) return NH;
        } else if (f == F_FLAGS[k]) {
            if (wt != 0 || rd_varint(&r, &u)) return NH;
            pt->flags = (uint32_t)u;
        } else if (f == F_EXEMPLARS[k] || (k == K_EXP && f == 11)) {
            return NH; /* exemplars: left to Python */
        } else if (k <= K_SUM && (f == 4 || f == 6)) {
            if (wt != 1 || rd_fixed64(&r, &pt->value_bits)) return NH;
            pt->value_kind = f == 4 ? 1 : 2;
        } else if (k >= K_HIST && f == 4) {
            if (wt != 1 || rd_fixed64(&r, &pt->count)) return NH;
        } else if (k >= K_HIST && f == 5) {
            if (wt != 1 || rd_fixed64(&r, &pt->sum_bits)) return NH;
            pt->has_sum = 1;
        } else if (k == K_HIST && f == 6) {
            if (rd_packed8(&r, wt, &pt->counts, &pt->counts_n)) return NH;
        } else if (k == K_HIST && f == 7) {
            if (rd_packed8(&r, wt, &pt->bounds, &pt->bounds_n)) return NH;
        } else if ((k == K_HIST && (f == 11 || f == 12)) || (k == K_EXP && (f == 12 || f == 13))) {
            int is_min = f == (k == K_HIST ? 11u : 12u);
            if (wt != 1 || rd_fixed64(&r, is_min ? &pt->min_bits : &pt->max_bits)) return NH;
            *(is_min ? &pt->has_min : &pt->has_max) = 1;
        } else if (k == K_EXP && f == 6) {
            if (wt != 0 || rd_varint(&r, &u)) return NH;
            pt->scale = zigzag32(u);
        } else if (k == K_EXP && f == 7) {
            if (wt != 1 || rd_fixed64(&r, &pt->zero_count)) return NH;
        } else if (k == K_EXP && (f == 8 || f == 9)) {
            const uint8_t **side = f == 8 ? &pt->pos : &pt->neg;
            size_t *side_n = f == 8 ? &pt->pos_n : &pt->neg_n;
            if (wt != 2 || *side || rd_len(&r, side, side_n)) return NH; /* (twice: merged by upb) */
        } else if (k == K_EXP && f == 14) {
            if (wt != 1 || rd_fixed64(&r, &u)) return NH; /* zero_threshold: not stored */
        } else if (k == K_SUMMARY && f == 6) {
            if (wt != 2 || rd_len(&r, &q, &m)) return NH; /* quantile_values: written from the bytes */
        } else if (rd_skip(&r, wt)) {
            return NH;
        }
    }
    return 0;
}

/* the payload: {"metric":{...},"attributes":{...},"resource":{...}[,"scope":"..."]} into c->pay */
static int write_payload(Ctx *c, const Metric *mt, const Point *pt, const uint8_t *p, size_t n, size_t a0,
                         const Buf *scope_name) {
    Buf *b = &c->pay;
    int k = mt->kind;
    b->len = 0;
    if (PUTS(b, "{\"metric\":{\"name\":") || put_json_str_valid(b, mt->name, mt->name_n) ||
        PUTS(b, ",\"kind\":\"") || put(b, KIND_NAMES[k], strlen(KIND_NAMES[k])) || putch(b, '"'))
        return NH;
    if (mt->unit_n && (PUTS(b, ",\"unit\":") || put_json_str_valid(b, mt->unit, mt->unit_n))) return NH;
    if (k != K_GAUGE && k != K_SUMMARY && (mt->temporality == 1 || mt->temporality == 2) &&
        (mt->temporality == 1 ? PUTS(b, ",\"temporality\":\"delta\"") : PUTS(b, ",\"temporality\":\"cumulative\"")))
        return NH;
    if (k == K_SUM && (mt->monotonic ? PUTS(b, ",\"monotonic\":true") : PUTS(b, ",\"monotonic\":false"))) return NH;
    if (pt->start >= 1000 && (PUTS(b, ",\"start_us\":") || put_u64(b, pt->start / 1000))) return NH;
    if (k <= K_SUM) {
        double v = pt->value_kind == 1 ? bits_double(pt->value_bits) : (double)(int64_t)pt->value_bits;
        if (PUTS(b, ",\"value\":") || put_double(b, v)) return NH;
    } else {
        if (PUTS(b, ",\"count\":") || put_u64(b, pt->count)) return NH;
        if ((pt->has_sum || k == K_SUMMARY) && (PUTS(b, ",\"sum\":") || put_double(b, bits_double(pt->sum_bits))))
            return NH;
        if (pt->has_min && (PUTS(b, ",\"min\":") || put_double(b, bits_double(pt->min_bits)))) return NH;
        if (pt->has_max && (PUTS(b, ",\"max\":") || put_double(b, bits_double(pt->max_bits)))) return NH;
    }
    if (k == K_HIST && (PUTS(b, ",\"bounds\":") || put_packed8(b, pt->bounds, pt->bounds_n, 1) ||
                        PUTS(b, ",\"counts\":") || put_packed8(b, pt->counts, pt->counts_n, 0)))
        return NH;
    if (k == K_EXP && (PUTS(b, ",\"scale\":") || put_i64(b, pt->scale) || PUTS(b, ",\"zero_count\":") ||
                       put_u64(b, pt->zero_count) || put_buckets(b, pt->pos, pt->pos_n, "positive") ||
                       put_buckets(b, pt->neg, pt->neg_n, "negative")))
        return NH;
    if (k == K_SUMMARY && put_quantiles(b, p, n)) return NH;
    if (pt->flags && (PUTS(b, ",\"flags\":") || put_u64(b, pt->flags))) return NH;
    if (PUTS(b, "},\"attributes\":") || write_object(b, &c->vec, a0, 0) || PUTS(b, ",\"resource\":") ||
        put(b, c->resource.p, c->resource.len))
        return NH;
    if (scope_name->len && (PUTS(b, ",\"scope\":") || put_json_str_valid(b, (const uint8_t *)scope_name->p,
                                                                         scope_name->len)))
        return NH;
    return putch(b, '}');
}

/* point_id(payload + "\0" + time in ns): the event id, into c->scratch */
static int point_id(Ctx *c, uint64_t time_ns) {
    Buf *b = &c->pay;
    size_t mark = b->len;
    if (putch(b, '\0') || put_u64(b, time_ns)) return NH;
    PyObject *data = PyBytes_FromStringAndSize(b->p, (Py_ssize_t)b->len);
    b->len = mark;
    if (!data) return NH;
    PyObject *id = PyObject_CallOneArg(c->ident, data);
    Py_DECREF(data);
    if (!id) return NH;
    Py_ssize_t n;
    const char *s = PyUnicode_Check(id) ? PyUnicode_AsUTF8AndSize(id, &n) : NULL;
    int rc = NH;
    if (s) {
        c->scratch.len = 0;
        rc = put(&c->scratch, s, (size_t)n);
    }
    Py_DECREF(id);
    return rc;
}

static int do_point(Ctx *c, const Metric *mt, const uint8_t *p, size_t n, const Buf *scope_name) {
    Point pt;
    memset(&pt, 0, sizeof pt);
    size_t a0 = c->vec.n;
    Py_ssize_t index = c->total++;
    int rc = NH;
    if (parse_point(c, mt, p, n, &pt) || write_payload(c, mt, &pt, p, n, a0, scope_name) || point_id(c, pt.time))
        goto done;
    uint64_t us = pt.time ? pt.time / 1000 : c->now; /* (Python: time_ns // 1000 if time_ns else None) */
    Buf *eid = &c->scratch;
    if (us > c->max_us) {
        rc = add_rejection(c, index, "invalid_timestamp", eid, PyLong_FromUnsignedLongLong(us));
        goto done;
    }
    if (us > c->latest) {
        rc = add_rejection(c, index, "clock_skew", eid, PyLong_FromUnsignedLongLong(us));
        goto done;
    }
    if (c->tenant_from_resource && c->has_tenant &&
        ((c->tenant.len && c->tenant.p[0] == '_') ||
         (c->only_tenant && ((size_t)c->only_tenant_n != c->tenant.len ||
                             memcmp(c->only_tenant, c->tenant.p, c->tenant.len))))) {
        rc = add_rejection(c, index, "forbidden_tenant", eid,
                           PyUnicode_DecodeUTF8(c->tenant.p, (Py_ssize_t)c->tenant.len, "strict"));
        goto done;
    }
    Buf *b = &c->out;
    if (PUTS(b, "{\"event_type\":\"metric\",\"event_id\":\"") || put(b, eid->p, eid->len) ||
        PUTS(b, "\",\"tenant_id\":"))
        goto done;
    if (c->tenant_from_resource && c->has_tenant) {
        if (put_json_str_valid(b, (const uint8_t *)c->tenant.p, c->tenant.len)) goto done;
    } else if (put_json_str_valid(b, (const uint8_t *)c->default_tenant, (size_t)c->default_tenant_n)) {
        goto done;
    }
    if (PUTS(b, ",\"timestamp\":") || put_u64(b, us) || PUTS(b, ",\"received_at\":") || put_u64(b, c->now)) goto done;
    if (c->has_source && (PUTS(b, ",\"source\":") || put_json_str_valid(b, (const uint8_t *)c->source.p, c->source.len)))
        goto done;
    if (PUTS(b, ",\"source_protocol\":") ||
        put_json_str_valid(b, (const uint8_t *)c->source_protocol, (size_t)c->source_protocol_n) ||
        PUTS(b, ",\"method\":") || put_json_str_valid(b, mt->name, utf8_prefix(mt->name, mt->name_n, 1024)) ||
        PUTS(b, ",\"attributes\":") || put(b, c->pay.p, c->pay.len) || PUTS(b, "}\n"))
        goto done;
    c->accepted++;
    if (us < c->low) c->low = us;
    if (us > c->high) c->high = us;
    rc = 0;
done:
    c->vec.n = a0;
    return rc;
}

/* a Metric: name, description (checked, not stored), unit, one data oneof; metadata left to Python */
static int do_metric(Ctx *c, const uint8_t *p, size_t n, const Buf *scope_name) {
    static const uint32_t DATA_FIELDS[] = {5, 7, 9, 10, 11};
    Metric mt;
    memset(&mt, 0, sizeof mt);
    mt.name = mt.unit = (const uint8_t *)"";
    mt.kind = -1;
    const uint8_t *data = NULL;
    size_t data_n = 0;
    Rd r = {p, p + n};
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        if (rd_tag(&r, &f, &wt)) return NH;
        int kind = -1;
        for (int i = 0; i < 5; i++)
            if (f == DATA_FIELDS[i]) kind = i;
        if (f == 1 || f == 3) { /* (every occurrence checked as UTF-8, as upb does) */
            if (rd_str(&r, wt, f == 1 ? &mt.name : &mt.unit, f == 1 ? &mt.name_n : &mt.unit_n)) return NH;
        } else if (f == 2) {
            if (chk_str(&r, wt)) return NH;
        } else if (kind >= 0) {
            if (wt != 2 || mt.kind >= 0 || rd_len(&r, &data, &data_n)) return NH; /* (a oneof set twice) */
            mt.kind = kind;
        } else if (f == 12) {
            return NH;
        } else if (rd_skip(&r, wt)) {
            return NH;
        }
    }
    if (mt.kind < 0) return 0; /* no data: no points */
    Rd d = {data, data + data_n};
    while (d.p < d.end) { /* first pass: temporality and monotonicity, wherever they are */
        uint32_t f;
        int wt;
        uint64_t u;
        if (rd_tag(&d, &f, &wt)) return NH;
        if (f == 1 || f > 3 || (f >= 2 && (mt.kind == K_GAUGE || mt.kind == K_SUMMARY)) ||
            (f == 3 && mt.kind != K_SUM)) {
            if (f == 1 && wt != 2) return NH;
            if (rd_skip(&d, wt)) return NH;
        } else {
            if (wt != 0 || rd_varint(&d, &u)) return NH;
            if (f == 2) mt.temporality = (uint32_t)u;
            else mt.monotonic = u != 0;
        }
    }
    d.p = data;
    while (d.p < d.end) {
        uint32_t f;
        int wt;
        const uint8_t *q;
        size_t m;
        if (rd_tag(&d, &f, &wt)) return NH;
        if (f == 1) {
            if (rd_len(&d, &q, &m) || do_point(c, &mt, q, m, scope_name)) return NH;
        } else if (rd_skip(&d, wt)) {
            return NH;
        }
    }
    return 0;
}

static PyObject *map_with(PyObject *args, PyObject *kwargs, Item item) {
    static char *names[] = {"data", "tenant_from_resource", "default_tenant", "only_tenant", "now", "latest",
                            "max_us", "source_protocol", "price", "ident", NULL};
    Py_buffer data;
    int from_resource;
    PyObject *default_tenant, *only_tenant, *source_protocol = NULL, *price = Py_None, *ident = Py_None;
    unsigned long long now, latest, max_us;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*pUOKKK|UOO", names, &data, &from_resource, &default_tenant,
                                     &only_tenant, &now, &latest, &max_us, &source_protocol, &price, &ident))
        return NULL;
    Ctx c;
    memset(&c, 0, sizeof c);
    c.price = price;
    c.ident = ident;
    PyObject *result = NULL;
    c.tenant_from_resource = from_resource;
    c.now = now;
    c.latest = latest;
    c.max_us = max_us;
    c.low = max_us;
    c.high = 0;
    c.default_tenant = PyUnicode_AsUTF8AndSize(default_tenant, &c.default_tenant_n);
    if (!c.default_tenant) goto fallback;
    if (source_protocol) {
        c.source_protocol = PyUnicode_AsUTF8AndSize(source_protocol, &c.source_protocol_n);
        if (!c.source_protocol) goto fallback;
    } else {
        c.source_protocol = "otlp";
        c.source_protocol_n = 4;
    }
    if (only_tenant != Py_None) {
        if (!PyUnicode_Check(only_tenant)) {
            PyErr_SetString(PyExc_TypeError, "only_tenant must be a str or None");
            goto error;
        }
        c.only_tenant = PyUnicode_AsUTF8AndSize(only_tenant, &c.only_tenant_n);
        if (!c.only_tenant) goto fallback;
    }
    c.rejections = PyList_New(0);
    if (!c.rejections) goto error;
    if (do_request(&c, (const uint8_t *)data.buf, (size_t)data.len, item)) goto fallback;
    {
        PyObject *nd = PyBytes_FromStringAndSize(c.out.p ? c.out.p : "", (Py_ssize_t)c.out.len);
        if (!nd) goto error;
        result = Py_BuildValue("(NnnKKO)", nd, c.accepted, c.total, (unsigned long long)c.low,
                               (unsigned long long)c.high, c.rejections);
    }
    goto error; /* cleanup */
fallback:
    PyErr_Clear();
    result = Py_NewRef(Py_None);
error:
    Py_XDECREF(c.rejections);
    PyMem_Free(c.vec.a);
    PyMem_Free(c.out.p);
    PyMem_Free(c.resource.p);
    PyMem_Free(c.scratch.p);
    PyMem_Free(c.source.p);
    PyMem_Free(c.tenant.p);
    PyMem_Free(c.tool.p);
    PyMem_Free(c.model.p);
    PyMem_Free(c.pay.p);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *map_traces(PyObject *self, PyObject *args, PyObject *kwargs) {
    return map_with(args, kwargs, do_span);
}

static PyObject *map_metrics(PyObject *self, PyObject *args, PyObject *kwargs) {
    return map_with(args, kwargs, do_metric);
}

static PyObject *format_double(PyObject *self, PyObject *arg) {
    double x = PyFloat_AsDouble(arg);
    if (x == -1.0 && PyErr_Occurred()) return NULL;
    Buf b = {NULL, 0, 0};
    if (put_double(&b, x)) {
        PyMem_Free(b.p);
        Py_RETURN_NONE;
    }
    PyObject *r = PyBytes_FromStringAndSize(b.p, (Py_ssize_t)b.len);
    PyMem_Free(b.p);
    return r;
}

/* ------------------------------------------------------------------ find_any
   Whether any of a few needles occurs in a large buffer, in one pass over it: 16 positions at a time, each
   needle's first, middle and last byte are compared with the text at those offsets (GCC/clang vector
   extensions: SSE2 on x86-64, NEON on arm64, plain code elsewhere); only positions where all three match for
   some needle are compared whole. The analytics processor's four routing keys over a
   writer batch of 200 000 spans (218 MB): four memmem passes ~180 ms, this one ~86 ms. */
#define LANES 16  /* one SSE2 / NEON register. 32 lanes: 10 % faster in an AVX2 clone (78 against 86 ms), 25x
                     slower where the compiler has to split them (no clone: clang, musl, other CPUs) */
#define MAX_TOGETHER 8
#define FIND_ANY_RELEASE_BYTES (256 * 1024)  /* searched with the GIL held below this */
typedef signed char vec __attribute__((vector_size(LANES)));

typedef struct {
    const char *s;
    size_t len, mid;
    vec first, middle, last;  /* the needle's first, middle and last byte in every lane */
} Needle;

#define LOAD_LANES(into, p) memcpy(&(into), (p), LANES)  /* (a macro: no vector passed by value) */

static inline int matches(const unsigned char *text, size_t n, size_t at, const Needle *nd) {
    return at + nd->len <= n && memcmp(text + at, nd->s, nd->len) == 0;
}

/* ``d`` made ready to search for the non-empty ``len`` bytes at ``s``: its first, middle and last byte in every lane */
static void needle_init(Needle *d, const char *s, size_t len) {
    d->s = s;
    d->len = len;
    d->mid = len / 2;
    d->first = (vec){0} + (signed char)s[0];
    d->middle = (vec){0} + (signed char)s[d->mid];
    d->last = (vec){0} + (signed char)s[len - 1];
}

/* the index of a needle that occurs in text (the earliest occurrence's, which starts at *where), or -1; needles
   are non-empty */
static Py_ssize_t scan_text(const unsigned char *text, size_t n, const Needle *nd, Py_ssize_t k, size_t longest,
                            size_t *where) {
    size_t at = 0;
    for (; at + longest + LANES - 1 <= n; at += LANES) {  /* every load of this block stays inside the text */
        vec base, middle, last, hit = {0};
        LOAD_LANES(base, text + at);
        for (Py_ssize_t i = 0; i < k; i++) {
            LOAD_LANES(middle, text + at + nd[i].mid);
            LOAD_LANES(last, text + at + nd[i].len - 1);
            hit |= (base == nd[i].first) & (middle == nd[i].middle) & (last == nd[i].last);
        }
        uint64_t words[LANES / 8], any = 0;
        memcpy(words, &hit, sizeof words);
        for (size_t w = 0; w < LANES / 8; w++) any |= words[w];
        if (!any) continue;  /* (most blocks) */
        for (size_t w = 0; w < LANES / 8; w++) {
            /* lanes are 0 or 0xff: their top bits, gathered into the word's top byte, say which */
            unsigned bits = (unsigned)(((words[w] & 0x8080808080808080u) * 0x0002040810204081u) >> 56);
            while (bits) {
                size_t j = at + w * 8 + (size_t)__builtin_ctz(bits);
                bits &= bits - 1;
                for (Py_ssize_t i = 0; i < k; i++)
                    if (matches(text, n, j, &nd[i])) {
                        *where = j;
                        return i;
                    }
            }
        }
    }
    if (at >= n) return -1;
    uint64_t firsts[4] = {0, 0, 0, 0};  /* the needles' first bytes: most of the last positions start none */
    for (Py_ssize_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)nd[i].s[0];
        firsts[c >> 6] |= (uint64_t)1 << (c & 63);
    }
    for (; at < n; at++) {  /* the last positions, where a block's loads would pass the end (all of a short text) */
        unsigned char c = text[at];
        if (!(firsts[c >> 6] >> (c & 63) & 1)) continue;
        for (Py_ssize_t i = 0; i < k; i++)
            if (c == (unsigned char)nd[i].s[0] && matches(text, n, at, &nd[i])) {
                *where = at;
                return i;
            }
    }
    return -1;
}

/* find_any(data, needles) -> the index of a needle (a tuple of bytes) that occurs in data, or -1.
   ``data`` is one buffer or a list of buffers (each searched on its own: the writer's batch is a list of
   NDJSON chunks of complete lines, never joined). The search runs once for the whole list, without the GIL from
   FIND_ANY_RELEASE_BYTES on, so a thread can scan a large committed batch while the event loop keeps serving (and
   the event loop's own short searches never wait to take the GIL back): one pass of the needles
   together (scan_text) when there are 2 to MAX_TOGETHER non-empty ones, else glibc memmem per needle. */
static PyObject *find_any(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    /* (METH_FASTCALL, no format string parsed, and one buffer's view on the stack: a request's short search
       costs about what the search itself does) */
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "find_any() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *data = args[0], *needles = args[1];  /* (the caller holds both for the call) */
    if (!PyTuple_Check(needles)) {
        PyErr_Format(PyExc_TypeError, "find_any() argument 2 must be tuple, not %.50s", Py_TYPE(needles)->tp_name);
        return NULL;
    }
    Py_ssize_t k = PyTuple_GET_SIZE(needles);
    for (Py_ssize_t i = 0; i < k; i++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(needles, i))) {
            PyErr_SetString(PyExc_TypeError, "find_any: needles must be bytes");
            return NULL;
        }
    }
    Needle nd[MAX_TOGETHER];  /* (on the stack: aligned for the vectors in it) */
    size_t longest = 0;
    int together = k > 1 && k <= MAX_TOGETHER;  /* one needle: glibc's memmem is faster still */
    for (Py_ssize_t i = 0; i < k && together; i++) {
        PyObject *needle = PyTuple_GET_ITEM(needles, i);  /* the args tuple holds it */
        size_t len = (size_t)PyBytes_GET_SIZE(needle);
        if (len == 0) {  /* found anywhere: memmem says so */
            together = 0;
            break;
        }
        needle_init(&nd[i], PyBytes_AS_STRING(needle), len);
        if (len > longest) longest = len;
    }
    int is_list = PyList_Check(data);
    Py_ssize_t count = is_list ? PyList_GET_SIZE(data) : 1;
    Py_buffer one;
    Py_buffer *views = is_list ? PyMem_Calloc((size_t)(count ? count : 1), sizeof(Py_buffer)) : &one;
    PyObject *items = is_list ? PyList_GetSlice(data, 0, count) : NULL;  /* a private copy of the list */
    Py_ssize_t held = 0, found = -1;
    if (views == NULL || (is_list && items == NULL)) {
        if (views == NULL) PyErr_NoMemory();
        goto done;
    }
    for (; held < count; held++) {
        PyObject *item = is_list ? PyList_GET_ITEM(items, held) : data;
        if (PyObject_GetBuffer(item, &views[held], PyBUF_SIMPLE) < 0) break;
    }
    if (held == count) {
        size_t total = 0;
        for (Py_ssize_t c = 0; c < count; c++) total += (size_t)views[c].len;
        /* the GIL goes only for a long search: taking it back costs a wait behind whichever thread took it
           (up to the switch interval), far more than scanning a request's few kilobytes on the event loop */
        PyThreadState *saved = total >= FIND_ANY_RELEASE_BYTES ? PyEval_SaveThread() : NULL;
        for (Py_ssize_t c = 0; c < count && found < 0; c++) {
            const unsigned char *text = views[c].buf;
            size_t n = (size_t)views[c].len;
            if (together) {
                size_t where;
                found = scan_text(text, n, nd, k, longest, &where);
                continue;
            }
            for (Py_ssize_t i = 0; i < k && found < 0; i++) {
                PyObject *needle = PyTuple_GET_ITEM(needles, i);
                Py_ssize_t len = PyBytes_GET_SIZE(needle);
                if (len == 0 || memmem(text, n, PyBytes_AS_STRING(needle), (size_t)len) != NULL) found = i;
            }
        }
        if (saved != NULL) PyEval_RestoreThread(saved);
    }
done:
    for (Py_ssize_t c = 0; c < held; c++) PyBuffer_Release(&views[c]);
    if (views != &one) PyMem_Free(views);
    Py_XDECREF(items);
    if (held != count || PyErr_Occurred()) return NULL;
    return PyLong_FromSsize_t(found);
}

/* ------------------------------------------------------------------ find_exponent
   find_exponent(data) -> where the first exponent of three digits or more ([eE]+?[0-9]{3}) starts in a buffer, or
   -1: the ingestion screen's cheap test for a number past the float range (tea.pipeline.storable._huge_number; a
   hit is then read exactly). The e/E bytes are found 16 at a time; only at one are the next bytes looked at. */
static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static inline int exponent_at(const unsigned char *p, size_t n, size_t at) {  /* p[at] is e or E */
    size_t k = at + 1;
    if (k < n && p[k] == '+') k++;
    return k + 3 <= n && is_digit(p[k]) && is_digit(p[k + 1]) && is_digit(p[k + 2]);
}

static Py_ssize_t scan_exponent(const unsigned char *p, size_t n) {
    const vec e = (vec){0} + 'e', fold = (vec){0} + 0x20;  /* (only 'E' and 'e' are 'e' once 0x20 is set) */
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        vec v, hit;
        LOAD_LANES(v, p + i);
        hit = (v | fold) == e;
        uint64_t words[LANES / 8], any = 0;
        memcpy(words, &hit, sizeof words);
        for (size_t w = 0; w < LANES / 8; w++) any |= words[w];
        if (!any) continue;
        for (size_t j = i; j < i + LANES; j++)
            if ((p[j] | 0x20) == 'e' && exponent_at(p, n, j)) return (Py_ssize_t)j;
    }
    for (; i < n; i++)
        if ((p[i] | 0x20) == 'e' && exponent_at(p, n, i)) return (Py_ssize_t)i;
    return -1;
}

static PyObject *find_exponent(PyObject *self, PyObject *data) {
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    size_t n = (size_t)view.len;
    PyThreadState *saved = n >= FIND_ANY_RELEASE_BYTES ? PyEval_SaveThread() : NULL;
    Py_ssize_t found = scan_exponent(view.buf, n);
    if (saved != NULL) PyEval_RestoreThread(saved);
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(found);
}

/* ------------------------------------------------------------------ select_lines
   Which lines of NDJSON chunks a processor wants: those holding a required needle and any of a few others
   (tea.scan.select_lines, the consumer's per-line selection). Lines are found from the needles, not split one
   by one: the chunk is searched for the rarer needles (the ones of which any is wanted, together, scan_text),
   and only a line a needle was found in is bounded (memchr) and searched for the other (memmem); the newlines
   before it are counted 16 bytes at a time for its index. A needle holding a newline never occurs in a line. */
#define SELECT_RELEASE_BYTES FIND_ANY_RELEASE_BYTES

typedef struct {  /* the lines found, 4 numbers each (chunk, index, start, end), grown without the GIL */
    size_t *v;
    size_t len, cap;
} Found;

static int found_add(Found *f, size_t chunk, size_t index, size_t start, size_t end) {
    if (f->len + 4 > f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 1024;
        size_t *v = PyMem_RawRealloc(f->v, cap * sizeof *v);  /* (the raw allocator: no GIL needed) */
        if (v == NULL) return -1;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->len++] = chunk;
    f->v[f->len++] = index;
    f->v[f->len++] = start;
    f->v[f->len++] = end;
    return 0;
}

/* the newlines in p[0..n), and in *after the offset just past the last of them (0 when there is none) */
static size_t newlines(const unsigned char *p, size_t n, size_t *after) {
    const vec nl = (vec){0} + '\n';
    size_t count = 0, i = 0;
    *after = 0;
    for (; i + LANES <= n; i += LANES) {
        vec v, eq;
        LOAD_LANES(v, p + i);
        eq = v == nl;
        uint64_t words[LANES / 8];
        memcpy(words, &eq, sizeof words);
        for (size_t w = 0; w < LANES / 8; w++) {
            uint64_t bits = words[w] & 0x0101010101010101u;  /* one bit per newline: lanes are 0 or 0xff */
            if (!bits) continue;
            count += (size_t)__builtin_popcountll(bits);
            size_t last = i + w * 8 + 8;  /* (found bytewise: the lanes' order in a word is the CPU's) */
            while (p[last - 1] != '\n') last--;
            *after = last;
        }
    }
    for (; i < n; i++) {
        if (p[i] == '\n') {
            count++;
            *after = i + 1;
        }
    }
    return count;
}

typedef struct {
    const Needle *scan;       /* searched through the chunk: a line holding one is a candidate */
    Py_ssize_t scan_k;        /* 0: every line is a candidate */
    size_t longest;
    const char *required;     /* what a candidate line must hold besides (NULL: nothing) */
    size_t required_len;
    PyObject *any_of;         /* a tuple of bytes, one of which it must hold (NULL: no such condition) */
} Wanted;

static int line_holds(const unsigned char *line, size_t n, const char *s, size_t len) {
    return len == 0 || (len <= n && memmem(line, n, s, len) != NULL);
}

static int line_wanted(const unsigned char *line, size_t n, const Wanted *w) {
    if (w->required != NULL && !line_holds(line, n, w->required, w->required_len)) return 0;
    if (w->any_of == NULL) return 1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(w->any_of); i++) {
        PyObject *needle = PyTuple_GET_ITEM(w->any_of, i);  /* (reads of an immutable tuple: no GIL needed) */
        if (line_holds(line, n, PyBytes_AS_STRING(needle), (size_t)PyBytes_GET_SIZE(needle))) return 1;
    }
    return 0;
}

/* the wanted lines of one chunk into ``found``; -1 when out of memory */
static int select_chunk(const unsigned char *text, size_t n, size_t chunk, const Wanted *w, Found *found) {
    size_t at = 0, index = 0;  /* at: the start of line ``index`` */
    for (;;) {
        size_t start = at;
        if (w->scan_k > 0) {
            size_t where, after;
            if (scan_text(text + at, n - at, w->scan, w->scan_k, w->longest, &where) < 0) return 0;
            index += newlines(text + at, where, &after);  /* (a scanned needle holds no newline) */
            start = at + after;
        }
        const unsigned char *stop = memchr(text + start, '\n', n - start);
        size_t end = stop != NULL ? (size_t)(stop - text) : n;
        if (line_wanted(text + start, end - start, w) && found_add(found, chunk, index, start, end) < 0) return -1;
        if (stop == NULL) return 0;
        at = end + 1;
        index++;
    }
}

static int holds_newline(PyObject *needle) {
    return memchr(PyBytes_AS_STRING(needle), '\n', (size_t)PyBytes_GET_SIZE(needle)) != NULL;
}

/* the buffers of a list of chunks, held (from a private copy of the list) while read without the GIL */
typedef struct {
    Py_buffer *views;
    PyObject *items;
    Py_ssize_t count, held;
    size_t total;  /* their bytes */
} Chunks;

/* 0, or -1 with the exception set (chunks_release still due) */
static int chunks_hold(PyObject *list, Chunks *c) {
    c->count = PyList_GET_SIZE(list);
    c->views = PyMem_Calloc((size_t)(c->count ? c->count : 1), sizeof(Py_buffer));
    c->items = PyList_GetSlice(list, 0, c->count);
    c->held = 0;
    c->total = 0;
    if (c->views == NULL || c->items == NULL) {
        if (c->views == NULL) PyErr_NoMemory();
        return -1;
    }
    for (; c->held < c->count; c->held++) {
        if (PyObject_GetBuffer(PyList_GET_ITEM(c->items, c->held), &c->views[c->held], PyBUF_SIMPLE) < 0) return -1;
        c->total += (size_t)c->views[c->held].len;
    }
    return 0;
}

static void chunks_release(Chunks *c) {
    for (Py_ssize_t i = 0; i < c->held; i++) PyBuffer_Release(&c->views[i]);
    PyMem_Free(c->views);
    Py_XDECREF(c->items);
}

/* select_lines(chunks, required, any_of) -> for each chunk (a list of buffers of NDJSON lines separated by
   b"\n"), the list of (index, start, end) of each line ``chunk[start:end]`` (the ``index``-th of
   ``chunk.split(b"\n")``) that holds ``required`` and any of ``any_of`` (a tuple of bytes; none when empty),
   in order. Without the GIL from SELECT_RELEASE_BYTES on (a consumer's read of many records, in a worker
   thread). */
static PyObject *select_lines(PyObject *self, PyObject *args) {
    PyObject *chunks, *required, *any_of;
    if (!PyArg_ParseTuple(args, "O!O!O!:select_lines", &PyList_Type, &chunks, &PyBytes_Type, &required,
                          &PyTuple_Type, &any_of))
        return NULL;
    Py_ssize_t k = PyTuple_GET_SIZE(any_of), usable = 0;
    int any_empty = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *needle = PyTuple_GET_ITEM(any_of, i);
        if (!PyBytes_Check(needle)) {
            PyErr_SetString(PyExc_TypeError, "select_lines: needles must be bytes");
            return NULL;
        }
        if (PyBytes_GET_SIZE(needle) == 0) any_empty = 1;
        else if (!holds_newline(needle)) usable++;
    }
    /* ``never``: no line can be wanted (no needle of any_of fits in a line, or required does not) */
    int never = (usable == 0 && !any_empty) || holds_newline(required);
    Needle nd[MAX_TOGETHER];
    Wanted w = {nd, 0, 0, PyBytes_AS_STRING(required), (size_t)PyBytes_GET_SIZE(required), any_of};
    if (any_empty) w.any_of = NULL;  /* every line holds one of any_of */
    if (!any_empty && usable <= MAX_TOGETHER) {  /* the needles of any_of are searched for, required checked */
        for (Py_ssize_t i = 0; i < k; i++) {
            PyObject *needle = PyTuple_GET_ITEM(any_of, i);
            if (PyBytes_GET_SIZE(needle) == 0 || holds_newline(needle)) continue;
            size_t len = (size_t)PyBytes_GET_SIZE(needle);
            needle_init(&nd[w.scan_k++], PyBytes_AS_STRING(needle), len);
            if (len > w.longest) w.longest = len;
        }
        w.any_of = NULL;  /* (a candidate holds one) */
    } else if (w.required_len > 0) {  /* required is searched for, any_of checked in its lines */
        needle_init(&nd[0], w.required, w.required_len);
        w.scan_k = 1;
        w.longest = w.required_len;
        w.required = NULL;
    }  /* else every line is a candidate */
    Chunks held;
    PyObject *result = NULL;
    Found found = {NULL, 0, 0};
    int failed = 0;
    if (chunks_hold(chunks, &held) < 0) goto done;
    Py_ssize_t count = held.count;
    const Py_buffer *views = held.views;
    if (!never) {
        PyThreadState *saved = held.total >= SELECT_RELEASE_BYTES ? PyEval_SaveThread() : NULL;
        for (Py_ssize_t c = 0; c < count && !failed; c++)
            failed = select_chunk(views[c].buf, (size_t)views[c].len, (size_t)c, &w, &found) < 0;
        if (saved != NULL) PyEval_RestoreThread(saved);
        if (failed) {
            PyErr_NoMemory();
            goto done;
        }
    }
    result = PyList_New(count);
    if (result == NULL) goto done;
    size_t f = 0;
    for (Py_ssize_t c = 0; c < count; c++) {
        PyObject *lines = PyList_New(0);
        if (lines == NULL) goto fail;
        PyList_SET_ITEM(result, c, lines);
        for (; f < found.len && found.v[f] == (size_t)c; f += 4) {
            PyObject *line = Py_BuildValue("(nnn)", (Py_ssize_t)found.v[f + 1], (Py_ssize_t)found.v[f + 2],
                                           (Py_ssize_t)found.v[f + 3]);
            if (line == NULL || PyList_Append(lines, line) < 0) {
                Py_XDECREF(line);
                goto fail;
            }
            Py_DECREF(line);
        }
    }
    goto done;
fail:
    Py_CLEAR(result);
done:
    chunks_release(&held);
    PyMem_RawFree(found.v);
    return result;
}

/* ------------------------------------------------------------------ group_lines
   NDJSON lines regrouped by the string value of a key (tea.scan.group_lines: the DuckDB writer's batch, its
   lines by tenant, so that each partition's rows lie together in the staging table). The first occurrence of
   the key in a line (``"tenant_id":"``) gives the value: the bytes up to the next unescaped quote, as they are
   (not unescaped). One pass finds each line's group without the GIL, a second copies the lines into their
   group's bytes. */
#define GROUP_MAX 64  /* more distinct values: None (the caller keeps the lines' order) */

typedef struct {
    size_t chunk, start, end;  /* the line chunk[start:end], its newline excluded */
    int group;
} GroupLine;

typedef struct {
    const unsigned char *value;  /* NULL: the lines without the key */
    size_t len, bytes;           /* bytes: the group's size, a newline after each line */
    unsigned char *out;          /* where its next line is copied to */
} Group;

typedef struct {
    GroupLine *v;
    size_t len, cap;
} GroupLines;

/* each line's group into ``lines`` and ``groups`` (*ngroups of them), *runs the runs of lines of one group;
   1: too many values, -1: out of memory. The chunk is searched for the key (memmem), and only the bytes
   before it (a line without the key ends there) and after its value (its line's end) for a newline: one
   pass over the text, wherever in the line the key is. */
static int group_chunk(const unsigned char *text, size_t n, size_t chunk, const char *key, size_t key_len,
                       GroupLines *lines, Group *groups, int *ngroups, size_t *runs, int *last) {
    size_t at = 0;
    const unsigned char *found = memmem(text, n, key, key_len);  /* the next key at or after ``at`` (or none) */
    while (at < n) {
        if (found != NULL && found < text + at) found = memmem(text + at, n - at, key, key_len);
        size_t key_at = found != NULL ? (size_t)(found - text) : n;
        const unsigned char *stop = memchr(text + at, '\n', key_at - at);
        const unsigned char *value = NULL;
        size_t len = 0, end;
        if (stop != NULL || found == NULL) {  /* a line without the key */
            end = stop != NULL ? (size_t)(stop - text) : n;
        } else {
            const unsigned char *p = found + key_len, *e = text + n;
            while (p < e && *p != '"' && *p != '\n') p += *p == '\\' && p + 1 < e && p[1] != '\n' ? 2 : 1;
            if (p < e && *p == '"') {
                value = found + key_len;
                len = (size_t)(p - value);
            }
            stop = p < e ? memchr(p, '\n', (size_t)(e - p)) : NULL;
            end = stop != NULL ? (size_t)(stop - text) : n;
        }
        int g = 0;
        for (; g < *ngroups; g++)
            if (groups[g].value == NULL ? value == NULL
                    : value != NULL && groups[g].len == len && memcmp(groups[g].value, value, len) == 0)
                break;
        if (g == *ngroups) {
            if (g == GROUP_MAX) return 1;
            groups[g] = (Group){value, len, 0, NULL};
            (*ngroups)++;
        }
        groups[g].bytes += end - at + 1;
        if (g != *last) (*runs)++;
        *last = g;
        if (lines->len == lines->cap) {
            size_t cap = lines->cap ? lines->cap * 2 : 4096;
            GroupLine *v = PyMem_RawRealloc(lines->v, cap * sizeof *v);
            if (v == NULL) return -1;
            lines->v = v;
            lines->cap = cap;
        }
        lines->v[lines->len++] = (GroupLine){chunk, at, end, g};
        at = end + 1;
    }
    return 0;
}

/* group_lines(chunks, key) -> [bytes, ...] | None: the lines of ``chunks`` (NDJSON separated by b"\n"), each
   ending with a newline, grouped by the value of ``key`` in them (the lines without it a group of their own),
   the groups in the order of their first line and each group's lines in order. None when the lines already
   lie grouped (the chunks as they are will do) or hold more than GROUP_MAX values. */
static PyObject *group_lines(PyObject *self, PyObject *args) {
    PyObject *chunks, *key;
    if (!PyArg_ParseTuple(args, "O!O!:group_lines", &PyList_Type, &chunks, &PyBytes_Type, &key)) return NULL;
    const char *k = PyBytes_AS_STRING(key);
    size_t key_len = (size_t)PyBytes_GET_SIZE(key);
    if (key_len == 0 || memchr(k, '\n', key_len) != NULL) {
        PyErr_SetString(PyExc_ValueError, "group_lines: the key must be bytes without a newline");
        return NULL;
    }
    Chunks held;
    PyObject *result = NULL;
    GroupLines lines = {NULL, 0, 0};
    Group groups[GROUP_MAX];
    int ngroups = 0, last = -1, status = 0;
    size_t runs = 0;
    if (chunks_hold(chunks, &held) < 0) goto done;
    const Py_buffer *views = held.views;
    int release = held.total >= SELECT_RELEASE_BYTES;
    PyThreadState *saved = release ? PyEval_SaveThread() : NULL;
    for (Py_ssize_t c = 0; c < held.count && status == 0; c++)
        status = group_chunk(views[c].buf, (size_t)views[c].len, (size_t)c, k, key_len, &lines, groups, &ngroups,
                             &runs, &last);
    if (saved != NULL) PyEval_RestoreThread(saved);
    if (status < 0) {
        PyErr_NoMemory();
        goto done;
    }
    if (status > 0 || runs <= (size_t)ngroups) {  /* too many values, or grouped already */
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = PyList_New(ngroups);
    if (result == NULL) goto done;
    for (int g = 0; g < ngroups; g++) {
        PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)groups[g].bytes);
        if (out == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, g, out);
        groups[g].out = (unsigned char *)PyBytes_AS_STRING(out);
    }
    saved = release ? PyEval_SaveThread() : NULL;
    for (size_t i = 0; i < lines.len; i++) {
        const GroupLine *line = &lines.v[i];
        Group *g = &groups[line->group];
        size_t len = line->end - line->start;
        memcpy(g->out, (const unsigned char *)views[line->chunk].buf + line->start, len);
        g->out[len] = '\n';
        g->out += len + 1;
    }
    if (saved != NULL) PyEval_RestoreThread(saved);
done:
    chunks_release(&held);
    PyMem_RawFree(lines.v);
    return result;
}

static PyMethodDef methods[] = {
    {"find_any", (PyCFunction)(void (*)(void))find_any, METH_FASTCALL, "find_any(data | [data, ...], needles: tuple[bytes, ...]) -> int (index or -1)"},
    {"find_exponent", find_exponent, METH_O, "find_exponent(data) -> int (where [eE]+?[0-9]{3} starts, or -1)"},
    {"select_lines", select_lines, METH_VARARGS,
     "select_lines([data, ...], required: bytes, any_of: tuple[bytes, ...]) -> [[(index, start, end), ...], ...]"},
    {"group_lines", group_lines, METH_VARARGS,
     "group_lines([data, ...], key: bytes) -> [bytes, ...] | None (the lines grouped by the string value of key)"},
    {"map_traces", (PyCFunction)(void (*)(void))map_traces, METH_VARARGS | METH_KEYWORDS,
     "map_traces(data, tenant_from_resource, default_tenant, only_tenant, now, latest, max_us, "
     "source_protocol='otlp') -> (ndjson, accepted, total, low, high, rejections) | None"},
    {"map_metrics", (PyCFunction)(void (*)(void))map_metrics, METH_VARARGS | METH_KEYWORDS,
     "map_metrics(data, tenant_from_resource, default_tenant, only_tenant, now, latest, max_us, source_protocol, "
     "price, ident) -> (ndjson, accepted, total, low, high, rejections) | None"},
    {"format_double", format_double, METH_O, "a float as msgspec's JSON encoder writes it (for tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "tea._otlpfast",
                                    "Native OTLP trace mapper (see tea/_otlpfast.c).", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__otlpfast(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
