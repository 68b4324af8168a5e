/*
 * The harness ceiling: a XEP-0114 "component" that does no XML work at all. After the
 * handshake it finds each complete <message ...>...</message> in what it read, swaps the
 * values of its from= and to= attributes on the bytes, and writes everything it reflected
 * from one read() back with one write().
 *
 *   reflector HOST PORT HOSTNAME SECRET
 *
 * It only understands the harness's own stanzas (messages without nested <message>).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char in[1 << 20];
static char out[1 << 20];

static void die(const char *what) { perror(what); exit(1); }

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) { if (errno == EINTR) continue; die("write"); }
        p += w; n -= (size_t)w;
    }
}

/* Reads until `needle` appears in the accumulated input; returns its length so far. */
static size_t read_until(int fd, size_t have, const char *needle) {
    for (;;) {
        in[have] = 0;
        if (strstr(in, needle)) return have;
        ssize_t r = read(fd, in + have, sizeof(in) - 1 - have);
        if (r <= 0) die("read (negotiation)");
        have += (size_t)r;
    }
}

/* Finds attr='value' or attr="value" inside [tag, end); sets *value and *length. */
static int find_attr(const char *tag, const char *end, const char *attr, const char **value, size_t *length) {
    size_t alen = strlen(attr);
    for (const char *p = tag; p + alen + 2 < end; p++) {
        if (p[-1] == ' ' && memcmp(p, attr, alen) == 0 && p[alen] == '=' && (p[alen + 1] == '\'' || p[alen + 1] == '"')) {
            char quote = p[alen + 1];
            const char *v = p + alen + 2;
            const char *close = memchr(v, quote, (size_t)(end - v));
            if (!close) return 0;
            *value = v; *length = (size_t)(close - v);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: reflector HOST PORT HOSTNAME SECRET\n"); return 2; }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &address.sin_addr);
    if (connect(fd, (struct sockaddr *)&address, sizeof(address)) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    char header[512];
    snprintf(header, sizeof(header),
             "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
             "xmlns:stream='http://etherx.jabber.org/streams' to='%s'>", argv[3]);
    write_all(fd, header, strlen(header));
    size_t have = read_until(fd, 0, ">");
    have = read_until(fd, have, " id=");
    const char *id; size_t idlen;
    char *tagend;
    while (!(tagend = strchr(strstr(in, "stream:stream"), '>'))) have = read_until(fd, have, ">");
    if (!find_attr(strstr(in, "stream:stream"), tagend, "id", &id, &idlen)) { fprintf(stderr, "no stream id\n"); return 1; }
    char buffer[512];
    snprintf(buffer, sizeof(buffer), "%.*s%s", (int)idlen, id, argv[4]);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)buffer, strlen(buffer), digest);
    char handshake[128] = "<handshake>";
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++) sprintf(handshake + 11 + 2 * i, "%02x", digest[i]);
    strcat(handshake, "</handshake>");
    write_all(fd, handshake, strlen(handshake));
    have = read_until(fd, have, "<handshake");
    /* Keep whatever followed the handshake reply. */
    char *after = strstr(in, "<handshake");
    char *close = strchr(after, '>');
    while (!close) { have = read_until(fd, have, ">"); after = strstr(in, "<handshake"); close = strchr(after, '>'); }
    if (close[-1] != '/') { have = read_until(fd, have, "</handshake>"); close = strstr(in, "</handshake>") + 11; }
    size_t start = (size_t)(close + 1 - in);
    memmove(in, in + start, have - start);
    have -= start;

    for (;;) {
        size_t o = 0, consumed = 0;
        for (;;) {
            char *begin = memmem(in + consumed, have - consumed, "<message", 8);
            if (!begin) { if (have - consumed > 8) consumed = have - 8; break; }
            char *end = memmem(begin, (size_t)(in + have - begin), "</message>", 10);
            if (!end) { consumed = (size_t)(begin - in); break; }
            end += 10;
            char *tag_end = memchr(begin, '>', (size_t)(end - begin));
            const char *from, *to; size_t fromlen, tolen;
            if (find_attr(begin + 1, tag_end, "from", &from, &fromlen) && find_attr(begin + 1, tag_end, "to", &to, &tolen)) {
                /* Copy the stanza, writing each value where the other was. */
                const char *first = from < to ? from : to, *second = from < to ? to : from;
                size_t firstlen = from < to ? fromlen : tolen, secondlen = from < to ? tolen : fromlen;
                const char *p = begin;
                memcpy(out + o, p, (size_t)(first - p)); o += (size_t)(first - p);
                memcpy(out + o, second, secondlen); o += secondlen;
                p = first + firstlen;
                memcpy(out + o, p, (size_t)(second - p)); o += (size_t)(second - p);
                memcpy(out + o, first, firstlen); o += firstlen;
                p = second + secondlen;
                memcpy(out + o, p, (size_t)(end - p)); o += (size_t)(end - p);
            }
            consumed = (size_t)(end - in);
            if (o > sizeof(out) - 65536) break;
        }
        if (o) write_all(fd, out, o);
        memmove(in, in + consumed, have - consumed);
        have -= consumed;
        ssize_t r = read(fd, in + have, sizeof(in) - have);
        if (r == 0) return 0;
        if (r < 0) { if (errno == EINTR) continue; die("read"); }
        have += (size_t)r;
    }
}
