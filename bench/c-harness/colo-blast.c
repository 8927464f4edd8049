/*
 * colo-blast: the second benchmark harness (issue 17). An unwindowed sender and a receiver in separate processes,
 * in C, sharing no code with bench/ColoChardev.SocketBenchmark: the sender writes framed frames (be32 length,
 * optional be32 vnet_hdr_len, an Ethernet/IPv4/TCP or UDP frame) to primary_in and the same bytes to secondary_in,
 * chunk after chunk, as fast as the sockets take them, never waiting for outdev; a forked receiver reads outdev,
 * checks that every frame arrives once, in order within its flow, intact (every 16th byte for byte), answers
 * DO_CHECKPOINT on notify_dev with COLO_CHECKPOINT, and times the frames after the warm-up. With -P PID it reads
 * that process's CPU time (/proc/PID/stat) over the same window and its peak RSS. A frame lost, duplicated or
 * altered fails the run; frames out of order within their flow are counted (reordered=, QEMU's UDP comparison
 * reorders: spec 2.5) and fail it only with -O.
 *
 *   colo-blast -p PRI -s SEC -o OUT [-n NOTIFY] [-f FRAMES] [-w WARMUP] [-b BYTES] [-k FLOWS] [-u] [-v] [-O] [-P PID]
 *
 * Prints one line: key=value figures. Exit 0 when every frame came out intact, 1 otherwise. Only 127.0.0.1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { VNET_HEADER = 12, CHUNK_BYTES = 64 * 1024, RECEIVE_BYTES = 1 << 20, QUIET_SECONDS = 20 };

struct shape {
    int udp, vnet, flows, frame_bytes; /* frame_bytes: the Ethernet frame, without any virtio-net header */
    int header;                        /* chardev header: 4, or 8 with vnet */
    int framed;                        /* bytes on the wire per frame */
    int payload_offset, sequence_offset, payload_length;
};

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu_seconds(int pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *p = strrchr(text, ')'); /* fields after the command name; utime and stime are the 14th and 15th */
    unsigned long utime = 0, stime = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / sysconf(_SC_CLK_TCK);
}

static long peak_rss_kb(int pid)
{
    char path[64], line[256];
    long kb = 0;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static int connect_to(int port)
{
    double deadline = now_seconds() + QUIET_SECONDS;
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        close(fd);
        if (now_seconds() > deadline) {
            fprintf(stderr, "colo-blast: nothing accepts on 127.0.0.1:%d\n", port);
            exit(1);
        }
        usleep(10000);
    }
}

static void send_all(int fd, const uint8_t *bytes, size_t length)
{
    while (length > 0) {
        ssize_t sent = send(fd, bytes, length, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            perror("colo-blast: send");
            exit(1);
        }
        bytes += sent;
        length -= (size_t)sent;
    }
}

static void put16(uint8_t *p, unsigned v) { p[0] = v >> 8; p[1] = v; }
static void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

/* Frame `flow`'s template: chardev header, virtio-net header, Ethernet, IPv4, TCP (ACK|PSH) or UDP, payload a..z. */
static void make_template(const struct shape *s, int flow, uint8_t *t)
{
    memset(t, 0, s->framed);
    put32(t, s->frame_bytes + (s->vnet ? VNET_HEADER : 0));
    if (s->vnet)
        put32(t + 4, VNET_HEADER);
    uint8_t *e = t + s->header + (s->vnet ? VNET_HEADER : 0);
    memcpy(e, "\x52\x54\x00\x00\x00\x01\x52\x54\x00\x00\x00\x02\x08\x00", 14);
    uint8_t *ip = e + 14;
    int l4 = s->udp ? 8 : 20;
    ip[0] = 0x45;
    put16(ip + 2, 20 + l4 + s->payload_length);
    put16(ip + 4, flow);
    ip[8] = 64;
    ip[9] = s->udp ? 17 : 6;
    memcpy(ip + 12, "\x0a\x00\x00\x02\x0a\x00\x00\x01", 8);
    uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2)
        sum += (uint32_t)ip[i] << 8 | ip[i + 1];
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    put16(ip + 10, ~sum & 0xffff);
    uint8_t *h = ip + 20;
    put16(h, s->udp ? 5001 : 80);
    put16(h + 2, 40000 + flow);
    if (s->udp) {
        put16(h + 4, 8 + s->payload_length);
    } else {
        put32(h + 8, 5000);
        h[12] = 5 << 4;
        h[13] = 0x18; /* ACK|PSH */
        put16(h + 14, 65535);
    }
    for (int i = 0; i < s->payload_length; i++)
        h[l4 + i] = 'a' + i % 26;
}

static void write_frame(const struct shape *s, uint8_t **templates, long id, uint8_t *dest)
{
    int flow = (int)(id % s->flows);
    memcpy(dest, templates[flow], s->framed);
    memcpy(dest + s->payload_offset, &id, sizeof id);
    if (!s->udp)
        put32(dest + s->sequence_offset, (uint32_t)(1000000u + (uint32_t)(id / s->flows) * (uint32_t)s->payload_length));
}

struct receiver_result {
    long received, requests, reordered;
    double seconds, cpu;
    char error[200];
};

/* Reads outdev until `total` frames came, answering notify_dev meanwhile. */
static void receive(const struct shape *s, uint8_t **templates, int outdev, int notify, long total, long warmup, int pid, int strict_order, struct receiver_result *r)
{
    uint8_t *buffer = malloc(RECEIVE_BYTES), *expected = malloc(s->framed), *seen = calloc(total / 8 + 1, 1);
    long *next = calloc(s->flows, sizeof *next);
    for (int f = 0; f < s->flows; f++)
        next[f] = f;
    uint8_t nbuf[512];
    int have = 0, nhave = 0;
    double start = 0, cpu_start = 0, last = now_seconds();
    memset(r, 0, sizeof *r);
    while (r->received < total) {
        struct pollfd p[2] = {{.fd = outdev, .events = POLLIN}, {.fd = notify, .events = POLLIN}};
        int ready = poll(p, notify >= 0 ? 2 : 1, 1000);
        if (ready == 0 && now_seconds() - last > QUIET_SECONDS) {
            snprintf(r->error, sizeof r->error, "nothing from outdev for %d s after %ld of %ld frames", QUIET_SECONDS, r->received, total);
            return;
        }
        if (notify >= 0 && (p[1].revents & POLLIN)) {
            ssize_t n = recv(notify, nbuf + nhave, sizeof nbuf - nhave, 0);
            if (n > 0) {
                nhave += (int)n;
                int off = 0;
                while (nhave - off >= 4 && nhave - off >= 4 + (int)get32(nbuf + off)) {
                    int len = (int)get32(nbuf + off);
                    if (len == 13 && memcmp(nbuf + off + 4, "DO_CHECKPOINT", 13) == 0) {
                        uint8_t answer[4 + 15];
                        put32(answer, 15);
                        memcpy(answer + 4, "COLO_CHECKPOINT", 15);
                        send_all(notify, answer, sizeof answer);
                        r->requests++;
                    }
                    off += 4 + len;
                }
                memmove(nbuf, nbuf + off, nhave - off);
                nhave -= off;
            }
        }
        if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        ssize_t n = recv(outdev, buffer + have, RECEIVE_BYTES - have, 0);
        if (n <= 0) {
            snprintf(r->error, sizeof r->error, "outdev closed after %ld of %ld frames", r->received, total);
            return;
        }
        last = now_seconds();
        have += (int)n;
        int off = 0;
        while (have - off >= s->header) {
            long length = s->header + (long)get32(buffer + off);
            if (length != s->framed) {
                snprintf(r->error, sizeof r->error, "frame %ld on outdev has %ld bytes, expected %d", r->received, length - s->header, s->framed - s->header);
                return;
            }
            if (have - off < s->framed)
                break;
            long id;
            memcpy(&id, buffer + off + s->payload_offset, sizeof id);
            if (id < 0 || id >= total || (seen[id / 8] & (1 << (id % 8)))) {
                snprintf(r->error, sizeof r->error, "frame %ld came %s", id, id < 0 || id >= total ? "but was never sent" : "twice");
                return;
            }
            seen[id / 8] |= 1 << (id % 8);
            int flow = (int)(id % s->flows);
            if (id != next[flow]) {
                r->reordered++;
                if (strict_order) {
                    snprintf(r->error, sizeof r->error, "flow %d: frame %ld came where %ld was due (out of order)", flow, id, next[flow]);
                    return;
                }
            }
            if (id + s->flows > next[flow])
                next[flow] = id + s->flows;
            if ((id & 15) == 0) {
                write_frame(s, templates, id, expected);
                if (memcmp(expected, buffer + off, s->framed) != 0) {
                    snprintf(r->error, sizeof r->error, "frame %ld is not byte for byte the primary frame sent", id);
                    return;
                }
            }
            off += s->framed;
            if (++r->received == warmup) {
                start = now_seconds();
                cpu_start = pid > 0 ? cpu_seconds(pid) : 0;
            }
        }
        memmove(buffer, buffer + off, have - off);
        have -= off;
    }
    r->seconds = now_seconds() - start;
    r->cpu = pid > 0 ? cpu_seconds(pid) - cpu_start : -1;
}

int main(int argc, char **argv)
{
    int primary_port = 0, secondary_port = 0, outdev_port = 0, notify_port = 0, pid = 0, strict_order = 0, opt;
    long frames = 1000000, warmup = -1;
    struct shape s = {.flows = 1, .frame_bytes = 1454};
    while ((opt = getopt(argc, argv, "p:s:o:n:f:w:b:k:uvOP:")) != -1) {
        switch (opt) {
        case 'p': primary_port = atoi(optarg); break;
        case 's': secondary_port = atoi(optarg); break;
        case 'o': outdev_port = atoi(optarg); break;
        case 'n': notify_port = atoi(optarg); break;
        case 'f': frames = atol(optarg); break;
        case 'w': warmup = atol(optarg); break;
        case 'b': s.frame_bytes = atoi(optarg); break;
        case 'k': s.flows = atoi(optarg); break;
        case 'u': s.udp = 1; break;
        case 'v': s.vnet = 1; break;
        case 'O': strict_order = 1; break;
        case 'P': pid = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: colo-blast -p PRI -s SEC -o OUT [-n NOTIFY] [-f FRAMES] [-w WARMUP] [-b BYTES] [-k FLOWS] [-u] [-v] [-O] [-P PID]\n");
            return 2;
        }
    }
    if (!primary_port || !secondary_port || !outdev_port || s.flows < 1 || s.frame_bytes < 64 || s.frame_bytes > 9000 || frames < 1) {
        fprintf(stderr, "colo-blast: -p, -s and -o are needed; 64 <= -b <= 9000; -k >= 1; -f >= 1\n");
        return 2;
    }
    if (warmup < 0)
        warmup = frames / 5;
    s.header = s.vnet ? 8 : 4;
    int headers = 14 + 20 + (s.udp ? 8 : 20);
    s.payload_length = s.frame_bytes - headers;
    s.framed = s.header + (s.vnet ? VNET_HEADER : 0) + s.frame_bytes;
    s.payload_offset = s.header + (s.vnet ? VNET_HEADER : 0) + headers;
    s.sequence_offset = s.header + (s.vnet ? VNET_HEADER : 0) + 14 + 20 + 4;
    uint8_t **templates = malloc(s.flows * sizeof *templates);
    for (int f = 0; f < s.flows; f++) {
        templates[f] = malloc(s.framed);
        make_template(&s, f, templates[f]);
    }

    /* Outdev (and notify_dev) first, then a pause: QEMU discards output while its outdev has no peer. */
    int outdev = connect_to(outdev_port);
    int notify = notify_port ? connect_to(notify_port) : -1;
    usleep(300000);
    int primary = connect_to(primary_port), secondary = connect_to(secondary_port);
    usleep(300000);

    int channel[2];
    if (pipe(channel) != 0)
        return 1;
    pid_t child = fork();
    if (child == 0) {
        close(channel[0]);
        close(primary);
        close(secondary);
        struct receiver_result r;
        receive(&s, templates, outdev, notify, frames, warmup, pid, strict_order, &r);
        ssize_t w = write(channel[1], &r, sizeof r);
        _exit(w == (ssize_t)sizeof r && r.error[0] == 0 ? 0 : 1);
    }
    close(channel[1]);
    close(outdev);
    if (notify >= 0)
        close(notify);

    int per_chunk = CHUNK_BYTES / s.framed > 0 ? CHUNK_BYTES / s.framed : 1;
    uint8_t *chunk = malloc((size_t)per_chunk * s.framed);
    double sending = now_seconds();
    for (long id = 0; id < frames;) {
        int count = frames - id < per_chunk ? (int)(frames - id) : per_chunk;
        for (int i = 0; i < count; i++)
            write_frame(&s, templates, id + i, chunk + (size_t)i * s.framed);
        send_all(primary, chunk, (size_t)count * s.framed);
        send_all(secondary, chunk, (size_t)count * s.framed);
        id += count;
    }
    double sent_seconds = now_seconds() - sending;

    struct receiver_result r;
    memset(&r, 0, sizeof r);
    if (read(channel[0], &r, sizeof r) != (ssize_t)sizeof r)
        snprintf(r.error, sizeof r.error, "the receiver died");
    int status = 0;
    waitpid(child, &status, 0);
    long measured = frames - warmup;
    printf("rss_kb=%ld frames=%ld measured=%ld seconds=%.4f pps=%.0f mbps=%.1f cpu_us_per_frame=%.3f checkpoint_requests=%ld reordered=%ld sender_seconds=%.3f%s%s\n",
           pid > 0 ? peak_rss_kb(pid) : 0, r.received, measured, r.seconds, r.seconds > 0 ? measured / r.seconds : 0, r.seconds > 0 ? measured * (double)s.frame_bytes / r.seconds / 1e6 : 0,
           r.cpu >= 0 && measured > 0 ? r.cpu * 1e6 / measured : -1, r.requests, r.reordered, sent_seconds, r.error[0] ? " error=" : "", r.error);
    close(primary);
    close(secondary);
    return r.error[0] == 0 && r.received == frames ? 0 : 1;
}
