/*
 * rogue_pub.c: qb-rogue-pub, a test tool that plays a misbehaving local
 * process publishing garbage into the broker's ingest socket. It dials ADDR
 * with an NNG PUB socket and sends, round-robin, frames of every bad kind the
 * broker must reject: random bytes, a topic with no payload, invalid msgpack
 * (reserved byte 0xc1), a map with an unsupported version, a topic that does
 * not match its message, a msgpack array header claiming 2^32-1 elements,
 * and an oversized frame. Used by the integration tests; not installed.
 *
 *   qb-rogue-pub ADDR COUNT INTERVAL_MS
 */
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void rogue_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: qb-rogue-pub ADDR COUNT INTERVAL_MS\n");
        return 2;
    }
    long count = atol(argv[2]);
    long interval = atol(argv[3]);
    nng_socket s;
    int rv;
    if ((rv = nng_pub0_open(&s)) != 0 ||
        (rv = nng_dial(s, argv[1], NULL, NNG_FLAG_NONBLOCK)) != 0) {
        fprintf(stderr, "qb-rogue-pub: %s\n", nng_strerror(rv));
        return 1;
    }
    rogue_sleep_ms(300); /* let the connection come up */
    static const char t[] = "book.binance.BTC-USDT";
    /* {"v":99,"type":"delta"} */
    static const unsigned char badver[] = {0x82, 0xa1, 'v', 0x63, 0xa4, 't', 'y', 'p',
                                           'e',  0xa5, 'd', 'e',  'l',  't', 'a'};
    static const unsigned char huge_arr[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    unsigned seed = 12345;
    for (long i = 0; i < count; i++) {
        unsigned char buf[256];
        size_t n = 0;
        size_t big = 0;
        memcpy(buf, t, sizeof t); /* topic + NUL */
        n = sizeof t;
        switch (i % 7) {
        case 0:
            n = 64;
            for (size_t k = 0; k < n; k++) {
                seed = seed * 1103515245u + 12345u;
                buf[k] = (unsigned char)(seed >> 16);
            }
            break;
        case 1:
            break; /* topic only */
        case 2:
            buf[n++] = 0xc1;
            buf[n++] = 0xff;
            break;
        case 3:
            memcpy(buf + n, badver, sizeof badver);
            n += sizeof badver;
            break;
        case 4:
            memcpy(buf, "book.binance.ETH-USDT", 22);
            memcpy(buf + 22, badver, sizeof badver);
            buf[22 + 2 + 1] = 0x01; /* version 1 now, but incomplete and mismatched */
            n = 22 + sizeof badver;
            break;
        case 5:
            memcpy(buf + n, huge_arr, sizeof huge_arr);
            n += sizeof huge_arr;
            break;
        case 6:
            big = 9u << 20;
            break;
        }
        nng_msg *m;
        if (nng_msg_alloc(&m, big ? big : n) != 0) {
            return 1;
        }
        if (big) {
            memset(nng_msg_body(m), 0x91, big);
            memcpy(nng_msg_body(m), t, sizeof t);
        } else {
            memcpy(nng_msg_body(m), buf, n);
        }
        if (nng_sendmsg(s, m, 0) != 0) {
            nng_msg_free(m);
        }
        rogue_sleep_ms(interval);
    }
    nng_close(s);
    return 0;
}
