/* model_update.c: the model.update decoder (see model_update.h; format in
 * docs/ota-format.md of compression-search, reference decoder objectives/ota_stream.py).
 *
 * A binary adaptive range decoder (LZMA's, 12-bit probabilities adapting by 1/16) decodes
 * the sections of the file one step at a time: a section header field, an LZ77 token, an
 * int8 weight or an int32 value. A step reads at most MU_STEP_BYTES input bytes, so the
 * decoder runs a step only while that many are buffered (or all input is in): feeding
 * needs no coroutine and no bound on how the input is split.
 */
#include "model_update.h"

#include <string.h>

#define PROB_BITS 12
#define PROB_INIT (1u << (PROB_BITS - 1))
#define SHIFT 4
#define TOP (1u << 24)
/* A step reads at most 104 bytes (an LZ77 match: 2 + 2 + 2 x 49; a bit of adaptive
 * probability reads at most 2, a direct bit 1); the input ring holds that many. */
#define IN_BYTES 112u
#define MU_STEP_BYTES 104u
#define RAW 0
#define INT8 1
#define INT32 2
#define FLOATS 3
#define MIN_MATCH 3u
#define MIN_REP 2u
#define SAME 4 /* a relative update's section of the base's bytes at the same offsets */
/* An int8 section's mode: flags (ota_stream.py NO_PREDICTION, BYTE_TREE, BASE). */
#define NO_PREDICTION 1u
#define BYTE_TREE 2u
#define BASE 4u

enum { PH_HEADER, PH_SECTION, PH_PARAM, PH_BODY, PH_DONE };

typedef uint16_t prob;
/* An adaptive number of at most `max` classes: max unary probabilities, max + 1 top. */
#define NUMBER(max) (2 * (max) + 1)

struct mu_decoder {
    mu_write_fn write;
    void *user;
    uint32_t mask, length, stream_length, received, consumed, produced;
    uint32_t range, code, in_head, in_count;
    uint32_t section_end, section_base, rep, taps, width, height, i, x, y, value_bytes;
    const uint8_t *base; /* a relative update's base file (mu_set_base) */
    uint32_t base_length;
    int error;
    uint8_t phase, kind, param, after_match, after_zero, rc_ready, head_fill, mode, relative;
    uint8_t sha256[32]; /* the header's */
    uint8_t in[IN_BYTES]; /* the input ring; the header is gathered here first */
    struct { /* models (objectives/ota_stream.py, Models), only probabilities */
        prob kind[4], same[1], is_match[16], is_rep[1], is_zero[2], trees[2][256];
        prob w_zero[4], w_sign[4], i_zero[1], i_sign[1];
        prob length[NUMBER(24)], match[NUMBER(16)], rep[NUMBER(16)]; /* length: params too */
        prob dist[NUMBER(16)], w_mag[4][NUMBER(7)], i_mag[NUMBER(31)];
    } m;
    /* SHA-256 of the output */
    uint32_t h[8];
    uint8_t block[64];
    uint32_t total_lo;
};

/* The state fits MU_STATE_BYTES on every target (a compile error otherwise). */
typedef char mu_state_fits[sizeof(struct mu_decoder) <= MU_STATE_BYTES ? 1 : -1];

/* ---- SHA-256 (FIPS 180-4), a 16-word rolling message schedule ---- */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define ROR(v, n) (((v) >> (n)) | ((v) << (32 - (n))))

static void sha_block(uint32_t *h, const uint8_t *p)
{
    uint32_t w[16], s[8], t1, t2;
    unsigned j;
    for (j = 0; j < 16; j++)
        w[j] = (uint32_t)p[4 * j] << 24 | (uint32_t)p[4 * j + 1] << 16 |
               (uint32_t)p[4 * j + 2] << 8 | p[4 * j + 3];
    memcpy(s, h, sizeof s);
    for (j = 0; j < 64; j++) {
        if (j >= 16) {
            uint32_t a = w[(j + 1) & 15], b = w[(j + 14) & 15];
            w[j & 15] += (ROR(a, 7) ^ ROR(a, 18) ^ (a >> 3)) + w[(j + 9) & 15] +
                         (ROR(b, 17) ^ ROR(b, 19) ^ (b >> 10));
        }
        t1 = s[7] + (ROR(s[4], 6) ^ ROR(s[4], 11) ^ ROR(s[4], 25)) +
             ((s[4] & s[5]) ^ (~s[4] & s[6])) + K[j] + w[j & 15];
        t2 = (ROR(s[0], 2) ^ ROR(s[0], 13) ^ ROR(s[0], 22)) +
             ((s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]));
        memmove(s + 1, s, 7 * sizeof *s);
        s[4] += t1;
        s[0] = t1 + t2;
    }
    for (j = 0; j < 8; j++) h[j] += s[j];
}

static void sha_bytes(mu_decoder *d, const uint8_t *p, size_t n)
{
    while (n--) {
        d->block[d->total_lo++ & 63] = *p++;
        if ((d->total_lo & 63) == 0) sha_block(d->h, d->block);
    }
}

static void sha_init(mu_decoder *d)
{
    d->h[0] = 0x6a09e667; d->h[1] = 0xbb67ae85; d->h[2] = 0x3c6ef372; d->h[3] = 0xa54ff53a;
    d->h[4] = 0x510e527f; d->h[5] = 0x9b05688c; d->h[6] = 0x1f83d9ab; d->h[7] = 0x5be0cd19;
    d->total_lo = 0;
}

/* Pads the bytes hashed so far; whether their SHA-256 is `expected`. */
static int sha_matches(mu_decoder *d, const uint8_t *expected)
{
    uint8_t pad[8];
    uint32_t bits = d->total_lo << 3, j;
    for (j = 0; j < 8; j++) pad[j] = (uint8_t)(j < 3 ? 0 : j == 3 ? d->total_lo >> 29 : bits >> (8 * (7 - j)));
    sha_bytes(d, (const uint8_t *)"\x80", 1);
    while ((d->total_lo & 63) != 56) sha_bytes(d, (const uint8_t *)"", 1);
    sha_bytes(d, pad, 8);
    for (j = 0; j < 32; j++)
        if ((uint8_t)(d->h[j >> 2] >> (24 - 8 * (j & 3))) != expected[j]) return 0;
    return 1;
}

static int fail(mu_decoder *d, int code)
{
    if (!d->error) d->error = code;
    return d->error;
}

/* ---- output: the window is a ring; each time it fills, it goes to the callback whole
 * (a match reads at most the window's length back, the byte its next put replaces) ---- */
#define WINDOW(d) ((uint8_t *)(d) + MU_STATE_BYTES)

static void emit(mu_decoder *d, uint32_t n)
{
    const uint8_t *p = WINDOW(d) + ((d->produced - n) & d->mask);
    sha_bytes(d, p, n);
    if (d->write(d->user, p, n) != 0) fail(d, MU_ERR_WRITE);
}

static void put(mu_decoder *d, uint32_t byte)
{
    WINDOW(d)[d->produced++ & d->mask] = (uint8_t)byte;
    if ((d->produced & d->mask) == 0) emit(d, d->mask + 1);
}

static uint32_t back(const mu_decoder *d, uint32_t distance)
{
    return WINDOW(d)[(d->produced - distance) & d->mask];
}

/* ---- range decoder ---- */
static uint32_t next_byte(mu_decoder *d)
{
    uint32_t byte;
    if (d->in_count == 0) {
        fail(d, MU_ERR_TRUNCATED);
        return 0;
    }
    byte = d->in[d->in_head];
    d->in_head = (d->in_head + 1) % IN_BYTES;
    d->in_count--;
    d->consumed++;
    return byte;
}

static void normalize(mu_decoder *d)
{
    while (d->range < TOP) {
        d->range <<= 8;
        d->code = (d->code << 8) | next_byte(d);
    }
}

/* A decision whose probability then moves 2^-shift of the way towards it. */
static unsigned bit_shift(mu_decoder *d, prob *p, unsigned shift)
{
    uint32_t bound = (d->range >> PROB_BITS) * *p;
    unsigned b = d->code >= bound;
    if (b) {
        d->code -= bound;
        d->range -= bound;
        *p -= *p >> shift;
    } else {
        d->range = bound;
        *p += ((1u << PROB_BITS) - *p) >> shift;
    }
    normalize(d);
    return b;
}

static unsigned bit(mu_decoder *d, prob *p) { return bit_shift(d, p, SHIFT); }

static uint32_t direct(mu_decoder *d, unsigned n)
{
    uint32_t v = 0;
    while (n--) {
        d->range >>= 1;
        v <<= 1;
        if (d->code >= d->range) {
            d->code -= d->range;
            v |= 1;
        }
        normalize(d);
    }
    return v;
}

/* Adaptive Elias-gamma number, 0 .. 2^(max+1) - 2 (ota_coder.number). */
static uint32_t number(mu_decoder *d, prob *m, unsigned max)
{
    unsigned k = 0;
    uint32_t top;
    while (k < max && bit(d, &m[k])) k++;
    if (k == 0) return 0;
    top = bit(d, &m[max + k]);
    return ((uint32_t)1 << k) - 1 + (top << (k - 1)) + direct(d, k - 1);
}

/* Signed number: zero flag, sign, magnitude - 1; 0 with *ok = 0 if out of [-lim-1, lim]. */
static int32_t signed_value(mu_decoder *d, prob *zero, prob *sign, prob *m,
                            unsigned max, uint32_t lim, int *ok)
{
    uint32_t negative, magnitude;
    if (!bit(d, zero)) return 0;
    negative = bit(d, sign);
    magnitude = number(d, m, max) + 1;
    if (magnitude > lim + negative) {
        *ok = 0;
        return 0;
    }
    return negative ? (int32_t)(0u - magnitude) : (int32_t)magnitude;
}

/* ---- one step of each kind ---- */
static void lz_step(mu_decoder *d)
{
    uint32_t lane, ctx, distance, size, node = 1;
    uint32_t offset = d->produced - d->section_base;
    if (d->value_bytes) {
        offset &= d->value_bytes - 1;
        if (offset == 0 && bit(d, &d->m.is_zero[d->after_zero])) { /* a zero value */
            for (size = 0; size < d->value_bytes; size++) put(d, 0);
            d->after_zero = 1;
            d->after_match = 0;
            return;
        }
        d->after_zero = 0;
        lane = 4 - d->value_bytes + offset;
        ctx = 4 + lane;
    } else {
        lane = d->produced & 3;
        ctx = lane;
    }
    ctx += 8u * d->after_match;
    if (!bit(d, &d->m.is_match[ctx])) {
        prob *tree = d->m.trees[lane == 3];
        if (d->value_bytes && lane < 2) node = 256 | direct(d, 8); /* float mantissa */
        while (node < 256) node = (node << 1) | bit(d, &tree[node]);
        put(d, node & 0xff);
        d->after_match = 0;
        return;
    }
    d->after_match = 1;
    if (bit(d, d->m.is_rep)) {
        size = number(d, d->m.rep, 16) + MIN_REP;
        distance = d->rep;
    } else {
        distance = (number(d, d->m.dist, 16) + 1) * (d->value_bytes ? d->value_bytes : 1);
        size = number(d, d->m.match, 16) + MIN_MATCH;
    }
    if (distance > d->produced || distance > d->mask + 1 ||
        size > d->section_end - d->produced) {
        fail(d, MU_ERR_CORRUPT);
        return;
    }
    d->rep = distance;
    while (size--) put(d, back(d, distance));
}

static int32_t s8(uint32_t byte) { return (int32_t)(byte ^ 0x80) - 0x80; }

/* One int8 value: its prediction (mode), its residual as a signed value or a zigzag byte
 * down the lane-3 byte tree, adapting by 1/16, 1/32, then 1/64 (ota_stream.tree_shift). */
static void int8_step(mu_decoder *d)
{
    int32_t predicted = 0, residual;
    unsigned ctx = 0;
    int ok = 1;
    uint32_t row = d->taps * d->width, t = d->produced - d->section_base, node = 1;
    if (d->mode & BASE) {
        predicted = d->produced < d->base_length ? s8(d->base[d->produced]) : 0;
    } else if (d->mode & NO_PREDICTION) {
        /* predicted 0, context 0 */
    } else if (d->x && d->y) {
        int32_t a = s8(back(d, d->taps)), b = s8(back(d, row)), c = s8(back(d, row + d->taps));
        predicted = a + b - c;
        predicted = predicted > 127 ? 127 : predicted < -128 ? -128 : predicted;
        ctx = (a == c && b == c) ? 2 : 3;
    } else if (d->x || d->y) {
        predicted = s8(back(d, d->x ? d->taps : row));
        ctx = 1;
    }
    if (d->mode & BYTE_TREE) {
        unsigned shift = t < 128 ? 4 : t < 2048 ? 5 : 6;
        while (node < 256) node = (node << 1) | bit_shift(d, &d->m.trees[1][node], shift);
        node &= 0xff;
        residual = (int32_t)(node >> 1) ^ -(int32_t)(node & 1);
    } else {
        residual = signed_value(d, &d->m.w_zero[ctx], &d->m.w_sign[ctx], d->m.w_mag[ctx], 7,
                                127, &ok);
    }
    if (!ok) {
        fail(d, MU_ERR_CORRUPT);
        return;
    }
    put(d, (uint32_t)(predicted + residual) & 0xff);
    if (++d->i == d->taps) {
        d->i = 0;
        if (++d->x == d->width) {
            d->x = 0;
            if (++d->y == d->height) d->y = 0;
        }
    }
}

static void int32_step(mu_decoder *d)
{
    int ok = 1;
    uint32_t v = (uint32_t)signed_value(d, d->m.i_zero, d->m.i_sign, d->m.i_mag, 31,
                                        0x7fffffffu, &ok);
    unsigned j;
    if (!ok) {
        fail(d, MU_ERR_CORRUPT);
        return;
    }
    for (j = 0; j < 4; j++) put(d, (v >> (8 * j)) & 0xff);
}

/* A section's kind and length, then its parameters (int8: taps, width, height, mode;
 * float: the value's bytes), then its body. */
static void section_step(mu_decoder *d)
{
    uint32_t n, high;
    if (d->relative && bit(d, d->m.same)) {
        d->kind = SAME;
    } else {
        high = bit(d, &d->m.kind[1]);
        d->kind = (uint8_t)(high << 1 | bit(d, &d->m.kind[2 + high]));
    }
    n = number(d, d->m.length, 24) + 1;
    if (n > d->length - d->produced ||
        (d->kind == SAME && (d->produced > d->base_length || n > d->base_length - d->produced))) {
        fail(d, MU_ERR_CORRUPT);
        return;
    }
    d->section_base = d->produced;
    d->section_end = d->produced + n;
    d->after_match = d->after_zero = 0;
    d->value_bytes = 0;
    d->i = d->x = d->y = 0;
    d->param = 0;
    d->phase = d->kind == INT8 || d->kind == FLOATS ? PH_PARAM : PH_BODY;
    if (d->kind == INT32 && (n & 3)) fail(d, MU_ERR_CORRUPT);
}

static void param_step(mu_decoder *d)
{
    uint32_t v = number(d, d->m.length, 24) + 1, n = d->section_end - d->section_base;
    uint32_t window = d->mask + 1;
    if (d->kind == FLOATS) {
        if ((v != 2 && v != 4) || (n & (v - 1))) fail(d, MU_ERR_CORRUPT);
        d->value_bytes = v;
        d->phase = PH_BODY;
        return;
    }
    if (d->param == 0) d->taps = v;
    else if (d->param == 1) d->width = v;
    else if (d->param == 2) {
        d->height = v;
        if ((d->width > 1 || d->height > 1) &&
            (d->taps > window || d->width >= window ||
             (uint64_t)d->taps * (d->width + 1) > window))
            fail(d, MU_ERR_CORRUPT);
    } else {
        /* modes 0-3; in a relative update also BASE and BASE | BYTE_TREE */
        if (v > 4 && !(d->relative && (v == 5 || v == 7))) fail(d, MU_ERR_CORRUPT);
        d->mode = (uint8_t)(v - 1);
        d->phase = PH_BODY;
    }
    d->param++;
}

static void step(mu_decoder *d)
{
    if (d->phase == PH_SECTION) section_step(d);
    else if (d->phase == PH_PARAM) param_step(d);
    else if (d->kind == SAME) while (d->produced < d->section_end) put(d, d->base[d->produced]);
    else if (d->kind == INT8) int8_step(d);
    else if (d->kind == INT32) int32_step(d);
    else lz_step(d);
    if (d->phase == PH_BODY && d->produced == d->section_end)
        d->phase = d->produced == d->length ? PH_DONE : PH_SECTION;
}

/* ---- the API ---- */
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

mu_decoder *mu_init(void *work, size_t work_bytes, mu_write_fn write, void *user)
{
    mu_decoder *d = (mu_decoder *)work;
    prob *p;
    unsigned j;
    if (!work || !write || ((uintptr_t)work & 7) || work_bytes < MU_STATE_BYTES + 256 ||
        sizeof *d > MU_STATE_BYTES)
        return NULL;
    memset(d, 0, sizeof *d);
    d->write = write;
    d->user = user;
    d->mask = (uint32_t)(work_bytes - MU_STATE_BYTES); /* the room; checked at the header */
    d->range = 0xffffffffu;
    d->rep = 1;
    d->phase = PH_HEADER;
    p = (prob *)&d->m;
    for (j = 0; j < sizeof d->m / sizeof *p; j++) p[j] = PROB_INIT;
    sha_init(d);
    return d;
}

int mu_set_base(mu_decoder *d, const uint8_t *base, uint32_t length)
{
    if (d->head_fill || d->error || (!base && length)) return fail(d, MU_ERR_BASE);
    d->base = base;
    d->base_length = length;
    return MU_OK;
}

static int read_header(mu_decoder *d)
{
    const uint8_t *p = d->in;
    unsigned log2 = p[5];
    uint32_t room = d->mask, work = (uint32_t)p[6] | (uint32_t)p[7] << 8;
    if (memcmp(p, "MUPD", 4) != 0) return fail(d, MU_ERR_HEADER);
    if (p[4] != MU_FORMAT_VERSION && p[4] != MU_FORMAT_RELATIVE) return fail(d, MU_ERR_VERSION);
    d->length = le32(p + 8);
    d->stream_length = le32(p + 12);
    if (log2 < 8 || log2 > 15 || work != MU_STATE_BYTES + (1u << log2) || d->length == 0 ||
        d->stream_length < 5)
        return fail(d, MU_ERR_HEADER);
    if (room < (1u << log2)) return fail(d, MU_ERR_WORK);
    if (p[4] == MU_FORMAT_RELATIVE) { /* the base the update names, hashed as the output is */
        uint32_t j;
        if (le32(p + 48) == 0) return fail(d, MU_ERR_HEADER);
        if (!d->base || d->base_length != le32(p + 48)) return fail(d, MU_ERR_BASE);
        for (j = 0; j < d->base_length; j++) sha_bytes(d, d->base + j, 1);
        if (!sha_matches(d, p + 52)) return fail(d, MU_ERR_BASE);
        sha_init(d);
        d->relative = 1;
    }
    memcpy(d->sha256, p + 16, 32);
    d->mask = (1u << log2) - 1;
    d->phase = PH_SECTION;
    return MU_OK;
}

static void run(mu_decoder *d, uint32_t need)
{
    if (!d->rc_ready && d->in_count >= 5) {
        if (next_byte(d) != 0) fail(d, MU_ERR_CORRUPT);
        d->code = next_byte(d) << 24;
        d->code |= next_byte(d) << 16;
        d->code |= next_byte(d) << 8;
        d->code |= next_byte(d);
        d->rc_ready = 1;
    }
    while (d->rc_ready && !d->error && d->phase != PH_DONE && d->in_count >= need) step(d);
    /* A whole stream ends with the file: input left over is corrupt (and would stall
     * mu_feed, whose ring no step empties any more). */
    if (d->phase == PH_DONE && d->consumed != d->stream_length) fail(d, MU_ERR_CORRUPT);
}

int mu_feed(mu_decoder *d, const uint8_t *data, size_t length)
{
    while (length && !d->error) {
        uint32_t n, room;
        if (d->phase == PH_HEADER) {
            d->in[d->head_fill++] = *data++;
            length--;
            if (d->head_fill == (d->head_fill > 4 && d->in[4] == MU_FORMAT_RELATIVE
                                     ? MU_RELATIVE_HEADER_BYTES : MU_HEADER_BYTES))
                read_header(d);
            continue;
        }
        if (d->received == d->stream_length) return fail(d, MU_ERR_CORRUPT);
        room = IN_BYTES - d->in_count;
        n = d->stream_length - d->received;
        n = n < room ? n : room;
        n = length < n ? (uint32_t)length : n;
        length -= n;
        d->received += n;
        while (n--) {
            d->in[(d->in_head + d->in_count++) % IN_BYTES] = *data++;
        }
        run(d, MU_STEP_BYTES);
    }
    return d->error;
}

int mu_finish(mu_decoder *d)
{
    uint32_t rest;
    if (d->error) return d->error;
    if (d->phase == PH_HEADER || d->received < d->stream_length)
        return fail(d, MU_ERR_TRUNCATED);
    run(d, 0);
    if (!d->rc_ready) fail(d, MU_ERR_TRUNCATED);
    if (d->error) return d->error;
    if (d->phase != PH_DONE || d->consumed != d->stream_length) return fail(d, MU_ERR_CORRUPT);
    rest = d->produced & d->mask;
    if (rest) emit(d, rest);
    if (d->error) return d->error;
    return sha_matches(d, d->sha256) ? MU_OK : fail(d, MU_ERR_CHECKSUM);
}

uint32_t mu_file_length(const mu_decoder *d) { return d->length; }
