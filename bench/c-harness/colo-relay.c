/*
 * colo-relay: the second harness's relay baseline, in C. Listens on 127.0.0.1 PRI SEC OUT, takes one peer on each,
 * then copies primary_in's bytes to outdev and discards secondary_in's, one blocking thread per input with
 * 256 KiB reads: no framing, no comparison, the least any comparator must do. Runs until a peer closes.
 *
 *   colo-relay PRI SEC OUT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

enum { READ_BYTES = 256 * 1024 };

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4) != 0) {
        fprintf(stderr, "colo-relay: cannot listen on 127.0.0.1:%d\n", port);
        exit(1);
    }
    return fd;
}

static int outdev = -1;

static void *discard(void *arg)
{
    int fd = *(int *)arg;
    char *buffer = malloc(READ_BYTES);
    while (read(fd, buffer, READ_BYTES) > 0) {
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: colo-relay PRI SEC OUT\n");
        return 2;
    }
    int lp = listen_on(atoi(argv[1])), ls = listen_on(atoi(argv[2])), lo = listen_on(atoi(argv[3]));
    outdev = accept(lo, NULL, NULL);
    int primary = accept(lp, NULL, NULL);
    int secondary = accept(ls, NULL, NULL);
    pthread_t thread;
    pthread_create(&thread, NULL, discard, &secondary);
    char *buffer = malloc(READ_BYTES);
    ssize_t n;
    while ((n = read(primary, buffer, READ_BYTES)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(outdev, buffer + off, n - off, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return 1;
            }
            off += w;
        }
    }
    return 0;
}
