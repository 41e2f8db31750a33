// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as Kafka's RecordBatch v2 uses it.
// x86-64 with SSE 4.2: the crc32 instruction, 8 bytes at a time.
// Elsewhere: slicing-by-8 tables built on first use.
#include "crc32c.h"

#include <string.h>
#include <pthread.h>

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = table[0][n];
        for (int s = 1; s < 8; s++) {
            c = table[0][c & 0xff] ^ (c >> 8);
            table[s][n] = c;
        }
    }
}

static uint32_t crc32c_table(uint32_t crc, const unsigned char *p, size_t n) {
    pthread_once(&table_once, build_table);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
              table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
              table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
// The crc32 instruction has a latency of three cycles and a throughput of one a cycle, so one chain of
// it runs at a third of the speed the core allows. Long buffers are taken in blocks of three stripes
// of STRIPE bytes, each stripe its own chain, and the three registers joined: the register after
// A ++ B is shift(register after A) ^ (register after B from 0), where shift is the (linear) effect
// of STRIPE zero bytes, kept as four byte tables.
#define STRIPE 4096

static uint32_t stripe_shift[4][256];
static pthread_once_t stripe_once = PTHREAD_ONCE_INIT;

__attribute__((target("sse4.2")))
static uint32_t zeros_sse42(uint32_t crc, size_t n) {
    uint64_t c = crc;
    for (size_t i = 0; i < n; i += 8) c = __builtin_ia32_crc32di(c, 0);
    return (uint32_t)c;
}

static void build_stripe_shift(void) {
    for (int byte = 0; byte < 4; byte++)
        for (uint32_t v = 0; v < 256; v++) stripe_shift[byte][v] = zeros_sse42(v << (8 * byte), STRIPE);
}

static inline uint32_t shift_stripe(uint32_t c) {
    return stripe_shift[0][c & 0xff] ^ stripe_shift[1][(c >> 8) & 0xff] ^
           stripe_shift[2][(c >> 16) & 0xff] ^ stripe_shift[3][c >> 24];
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc;
    if (n >= 3 * STRIPE) {
        pthread_once(&stripe_once, build_stripe_shift);
        while (n >= 3 * STRIPE) {
            uint64_t c1 = 0, c2 = 0;
            for (size_t i = 0; i < STRIPE; i += 8) {
                uint64_t w0, w1, w2;
                memcpy(&w0, p + i, 8);
                memcpy(&w1, p + STRIPE + i, 8);
                memcpy(&w2, p + 2 * STRIPE + i, 8);
                c = __builtin_ia32_crc32di(c, w0);
                c1 = __builtin_ia32_crc32di(c1, w1);
                c2 = __builtin_ia32_crc32di(c2, w2);
            }
            c = shift_stripe(shift_stripe((uint32_t)c) ^ (uint32_t)c1) ^ (uint32_t)c2;
            p += 3 * STRIPE;
            n -= 3 * STRIPE;
        }
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}

static int has_sse42(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    }
    return cached;
}
#endif

uint32_t presencelog_crc32c(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = (const unsigned char *)data;
    crc = ~crc;
#if defined(__x86_64__)
    if (has_sse42()) return ~crc32c_sse42(crc, p, length);
#endif
    return ~crc32c_table(crc, p, length);
}

uint32_t presencelog_crc32c_portable(uint32_t crc, const void *data, size_t length) {
    return ~crc32c_table(~crc, (const unsigned char *)data, length);
}

int presencelog_crc32c_hardware(void) {
#if defined(__x86_64__)
    return has_sse42();
#else
    return 0;
#endif
}
