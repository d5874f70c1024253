/*
 * delay-proxy: a TCP proxy that delays every chunk by a fixed time in each direction, the slow
 * link of bench/remote-delay.ts (netem is not available here).
 *
 *   delay-proxy DELAY_MS LISTEN_HOST:PORT=TO_HOST:PORT [LISTEN_HOST:PORT=TO_HOST:PORT ...]
 *
 * Each route listens on LISTEN_HOST:PORT and forwards every connection to TO_HOST:PORT. A chunk
 * read from one side is written to the other DELAY_MS after it was read (0: at once), in order
 * and whole. A direction holds at most HOLD_LIMIT bytes read but not yet written: reading
 * waits above that (backpressure, like a paused socket). A FIN (half-close) is passed on after
 * the data still held for that side; a reset or error on either side, or a failed connect to
 * TO_HOST, closes both sides. TCP_NODELAY on both sides. Prints "ready" once every route
 * listens; on SIGTERM (or SIGINT) prints one line
 *
 *   stats [{"route":"H:P → H:P","connections":N,"bytesUp":N,"bytesDown":N,"turns":N},...,
 *          {"route":"proxy process CPU seconds (user+sys)","cpuSeconds":S}]
 *
 * and exits. bytesUp: client to TO_HOST; turns: chunks read in the other direction than the
 * connection's previous chunk (a request/answer exchange is two turns).
 *
 * Why C: the Node proxy it replaces (startDelayProxy, formerly in bench/lib.ts) used 1.5–2.1 s
 * of CPU per 2 GiB moved (0.4 s of it to start), on a 2-core machine where the backup tool and
 * qemu need the cores: the bench measured the proxy as much as the link (a real link costs the
 * backup host no CPU). This one uses 0.5–0.8 s, nearly all of it the kernel's copies.
 *
 * How: one thread per connection direction. It reads (up to CHUNK_SIZE at a time) into a chunk
 * stamped with its due time and queues it; the head chunk, once due, is written as far as the
 * destination takes it without blocking (send with MSG_DONTWAIT), the rest when ppoll says the
 * destination takes more. The thread waits in ppoll for the source to be readable (while less
 * than HOLD_LIMIT is held and no FIN was read), the destination to take more, or the head to be
 * due, whichever comes first: a destination that stalls does not stop the bytes behind it, as
 * on a real link. (Until 2026-12-05 a due chunk was written blocking and nothing was read
 * meanwhile: what the source sent during a stall of the destination was read only after it and
 * held the whole delay again, a gap a real link does not have.) Without a delay each chunk is
 * written right after its read, by the same thread, while it is in the cache. Chunk buffers are
 * reused (spares per direction): no copies beyond the kernel's read and write, no busy-waiting.
 * (A reader and a writer thread per direction, handing chunks over, moved 2 GiB at ~950 MiB/s
 * where this moves 1400–1750 on the 2-core machine: the hand-over costs wake-ups and cache
 * misses. splice(2) through pipes instead of read and write used 55–65 % less proxy CPU but
 * moved no more, usually less: the copies' cost went to the endpoints.)
 *
 * Not a link in one respect: the proxy's own sockets acknowledge what they receive, with
 * Linux's delayed ACK (40 ms once a socket answers quickly), not the far end's. A server with
 * Nagle on that answers in pieces (qemu while negotiating NBD options) waits for the proxy's
 * ACK, whatever the client's socket does.
 *
 * Build (bench/remote-delay.ts does it, into its work directory):
 *   gcc -O2 -Wall -Wextra -pthread -o delay-proxy bench/delay-proxy.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The most one read takes in. */
#define CHUNK_SIZE (1 << 20)
/* Bytes a direction holds at most before reading waits: 32 MiB per 10 ms is 3.2 GB/s, far
 * more than a loopback copy moves, so the proxy does not stand in for a TCP window. */
#define HOLD_LIMIT (32u << 20)
/* Spare chunk buffers a direction keeps for reuse (enough for HOLD_LIMIT in flight). */
#define MAX_SPARES (HOLD_LIMIT / CHUNK_SIZE + 2)

struct route {
    char *name; /* "LISTEN_HOST:PORT → TO_HOST:PORT" */
    int listen_fd;
    struct sockaddr_storage to_address;
    socklen_t to_address_length;
    /* Under stats_lock. */
    uint64_t connections, bytes_up, bytes_down, turns;
};

struct chunk {
    struct chunk *next;
    struct timespec due;
    size_t length;
    size_t written; /* bytes of it already sent on */
    char data[]; /* CHUNK_SIZE bytes */
};

struct connection;

/* One way through a connection: read from from_fd, written to to_fd; used by its thread only. */
struct direction {
    struct connection *connection;
    int from_fd, to_fd;
    bool is_up; /* client to upstream */
    struct chunk *queue_head, *queue_tail;
    size_t held; /* bytes queued */
    struct chunk *spares;
    unsigned spare_count;
};

struct connection {
    struct route *route;
    int client_fd, upstream_fd;
    struct direction up, down;
    atomic_bool aborted;
    atomic_int threads_running;
    int last_chunk_was_up; /* -1 before the first chunk; under stats_lock */
};

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static struct route *routes;
static int route_count;
static long delay_ms;

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "delay-proxy: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static void set_no_delay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---- Stats ---- */

static void count_chunk(struct connection *connection, bool is_up, size_t length)
{
    struct route *route = connection->route;
    pthread_mutex_lock(&stats_lock);
    if (is_up)
        route->bytes_up += length;
    else
        route->bytes_down += length;
    if (connection->last_chunk_was_up != (int)is_up)
        route->turns++;
    connection->last_chunk_was_up = is_up;
    pthread_mutex_unlock(&stats_lock);
}

static void print_stats(void)
{
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double cpu_seconds = usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
    pthread_mutex_lock(&stats_lock);
    printf("stats [");
    for (int i = 0; i < route_count; i++) {
        struct route *r = &routes[i];
        printf("{\"route\":\"%s\",\"connections\":%llu,\"bytesUp\":%llu,\"bytesDown\":%llu,\"turns\":%llu},", r->name,
               (unsigned long long)r->connections, (unsigned long long)r->bytes_up, (unsigned long long)r->bytes_down,
               (unsigned long long)r->turns);
    }
    printf("{\"route\":\"proxy process CPU seconds (user+sys)\",\"cpuSeconds\":%.6f}]\n", cpu_seconds);
    fflush(stdout);
    pthread_mutex_unlock(&stats_lock);
}

/* ---- Connection teardown ---- */

/* A reset, an error or a failed write: both sides closed, held data dropped. shutdown ends the
 * other thread's blocking read, ppoll or write; a sleeping thread sees the flag when it wakes. */
static void abort_connection(struct connection *connection)
{
    if (atomic_exchange(&connection->aborted, true))
        return;
    shutdown(connection->client_fd, SHUT_RDWR);
    shutdown(connection->upstream_fd, SHUT_RDWR);
}

static void free_chunk_list(struct chunk *chunk)
{
    while (chunk) {
        struct chunk *next = chunk->next;
        free(chunk);
        chunk = next;
    }
}

/* Called by each of the connection's two threads as it ends: the last one closes and frees. */
static void release_connection(struct connection *connection)
{
    if (atomic_fetch_sub(&connection->threads_running, 1) != 1)
        return;
    close(connection->client_fd);
    close(connection->upstream_fd);
    struct direction *directions[] = { &connection->up, &connection->down };
    for (int i = 0; i < 2; i++) {
        free_chunk_list(directions[i]->queue_head);
        free_chunk_list(directions[i]->spares);
    }
    free(connection);
}

/* ---- Time ---- */

static struct timespec now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t;
}

/* a - b in nanoseconds. */
static int64_t nanoseconds_between(const struct timespec *a, const struct timespec *b)
{
    return (int64_t)(a->tv_sec - b->tv_sec) * 1000000000 + (a->tv_nsec - b->tv_nsec);
}

/* Time from now until `due` (zero when due). */
static struct timespec time_until(const struct timespec *due)
{
    struct timespec current = now();
    int64_t left = nanoseconds_between(due, &current);
    if (left < 0)
        left = 0;
    return (struct timespec){ .tv_sec = left / 1000000000, .tv_nsec = left % 1000000000 };
}

/* ---- One direction ---- */

enum read_result { READ_CHUNK, READ_END, READ_FAILED };

/* One read into a (spare or new) chunk, queued with its due time. */
static enum read_result read_chunk(struct direction *direction)
{
    struct chunk *chunk = direction->spares;
    if (chunk) {
        direction->spares = chunk->next;
        direction->spare_count--;
    } else if (!(chunk = malloc(sizeof *chunk + CHUNK_SIZE))) {
        die("out of memory", NULL);
    }
    ssize_t n;
    do
        n = read(direction->from_fd, chunk->data, CHUNK_SIZE);
    while (n < 0 && errno == EINTR);
    if (n <= 0 || atomic_load(&direction->connection->aborted)) {
        free(chunk);
        return n == 0 && !atomic_load(&direction->connection->aborted) ? READ_END : READ_FAILED;
    }
    chunk->length = (size_t)n;
    chunk->written = 0;
    chunk->due = now();
    chunk->due.tv_sec += delay_ms / 1000;
    chunk->due.tv_nsec += delay_ms % 1000 * 1000000;
    if (chunk->due.tv_nsec >= 1000000000) {
        chunk->due.tv_sec++;
        chunk->due.tv_nsec -= 1000000000;
    }
    chunk->next = NULL;
    if (direction->queue_tail)
        direction->queue_tail->next = chunk;
    else
        direction->queue_head = chunk;
    direction->queue_tail = chunk;
    direction->held += chunk->length;
    count_chunk(direction->connection, direction->is_up, chunk->length);
    return READ_CHUNK;
}

enum write_result { WROTE_CHUNK, WRITE_BLOCKED, WRITE_FAILED };

/* As much of the head chunk as the destination takes now (never blocking); once all of it is
 * written the chunk leaves the queue (kept as a spare). */
static enum write_result write_head(struct direction *direction)
{
    struct chunk *chunk = direction->queue_head;
    while (chunk->written < chunk->length) {
        ssize_t n = send(direction->to_fd, chunk->data + chunk->written, chunk->length - chunk->written, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return WRITE_BLOCKED;
        if (n <= 0)
            return WRITE_FAILED;
        chunk->written += (size_t)n;
    }
    direction->queue_head = chunk->next;
    if (!direction->queue_head)
        direction->queue_tail = NULL;
    direction->held -= chunk->length;
    if (direction->spare_count < MAX_SPARES) {
        chunk->next = direction->spares;
        direction->spares = chunk;
        direction->spare_count++;
    } else {
        free(chunk);
    }
    return WROTE_CHUNK;
}

/* The thread of one direction: until its FIN is passed on, or the connection is aborted. It
 * writes what is due as far as the destination takes it, and meanwhile keeps reading (up to
 * HOLD_LIMIT held): a destination that stalls does not stop what is on the way behind it, as on
 * a real link (an earlier version wrote blocking, and read nothing meanwhile: whatever the
 * source had sent during a stall was read only after it, and held the whole delay again). */
static void *run_direction(void *arg)
{
    struct direction *direction = arg;
    struct connection *connection = direction->connection;
    bool source_ended = false;
    while (!atomic_load(&connection->aborted)) {
        struct chunk *head = direction->queue_head;
        struct timespec until_due = head ? time_until(&head->due) : (struct timespec){ 0, 0 };
        bool blocked = false;
        if (head && until_due.tv_sec == 0 && until_due.tv_nsec == 0) {
            enum write_result result = write_head(direction);
            if (result == WRITE_FAILED)
                break;
            if (result == WROTE_CHUNK)
                continue;
            blocked = true;
        }
        if (!head && source_ended) {
            shutdown(direction->to_fd, SHUT_WR); /* the FIN, after everything held */
            break;
        }
        struct pollfd wanted[2];
        nfds_t count = 0;
        bool reading = !source_ended && direction->held <= HOLD_LIMIT;
        if (reading)
            wanted[count++] = (struct pollfd){ .fd = direction->from_fd, .events = POLLIN };
        if (blocked)
            wanted[count++] = (struct pollfd){ .fd = direction->to_fd, .events = POLLOUT };
        int ready = ppoll(wanted, count, blocked || !head ? NULL : &until_due, NULL);
        if (ready < 0 && errno != EINTR)
            break;
        if (ready <= 0 || !reading || !(wanted[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        enum read_result result = read_chunk(direction);
        if (result == READ_FAILED)
            break;
        source_ended = result == READ_END;
    }
    if (!(source_ended && !direction->queue_head))
        abort_connection(connection);
    release_connection(connection);
    return NULL;
}

/* ---- Connections ---- */

static void start_thread(void *(*body)(void *), void *arg)
{
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    int error = pthread_create(&thread, &attributes, body, arg);
    pthread_attr_destroy(&attributes);
    if (error)
        die("pthread_create", strerror(error));
}

static void init_direction(struct direction *direction, struct connection *connection, int from_fd, int to_fd, bool is_up)
{
    memset(direction, 0, sizeof *direction);
    direction->connection = connection;
    direction->from_fd = from_fd;
    direction->to_fd = to_fd;
    direction->is_up = is_up;
}

/* Thread of an accepted connection: connects upstream, then starts the two direction threads
 * (or closes the client if the connect fails). */
static void *run_connection_setup(void *arg)
{
    struct connection *connection = arg;
    struct route *route = connection->route;
    int fd = socket(route->to_address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&route->to_address, route->to_address_length) < 0) {
        if (fd >= 0)
            close(fd);
        close(connection->client_fd);
        free(connection);
        return NULL;
    }
    set_no_delay(fd);
    connection->upstream_fd = fd;
    init_direction(&connection->up, connection, connection->client_fd, fd, true);
    init_direction(&connection->down, connection, fd, connection->client_fd, false);
    atomic_init(&connection->aborted, false);
    atomic_init(&connection->threads_running, 2);
    start_thread(run_direction, &connection->up);
    start_thread(run_direction, &connection->down);
    return NULL;
}

static void *run_acceptor(void *arg)
{
    struct route *route = arg;
    for (;;) {
        int fd = accept4(route->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR && errno != ECONNABORTED) {
                perror("delay-proxy: accept");
                sleep(1); /* out of descriptors or memory: try again later */
            }
            continue;
        }
        set_no_delay(fd);
        pthread_mutex_lock(&stats_lock);
        route->connections++;
        pthread_mutex_unlock(&stats_lock);
        struct connection *connection = calloc(1, sizeof *connection);
        if (!connection)
            die("out of memory", NULL);
        connection->route = route;
        connection->client_fd = fd;
        connection->upstream_fd = -1;
        connection->last_chunk_was_up = -1;
        start_thread(run_connection_setup, connection);
    }
    return NULL;
}

/* ---- Set-up ---- */

/* "HOST:PORT" (split at the last colon) resolved into *address. */
static void resolve(const char *host_port, struct sockaddr_storage *address, socklen_t *length)
{
    char *copy = strdup(host_port);
    char *colon = copy ? strrchr(copy, ':') : NULL;
    if (!colon)
        die("not HOST:PORT", host_port);
    *colon = '\0';
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *found;
    int error = getaddrinfo(copy, colon + 1, &hints, &found);
    if (error)
        die(host_port, gai_strerror(error));
    memcpy(address, found->ai_addr, found->ai_addrlen);
    *length = found->ai_addrlen;
    freeaddrinfo(found);
    free(copy);
}

/* "LISTEN_HOST:PORT=TO_HOST:PORT": listening once this returns. */
static void open_route(struct route *route, const char *spec)
{
    char *copy = strdup(spec);
    char *equals = copy ? strchr(copy, '=') : NULL;
    if (!equals)
        die("not LISTEN_HOST:PORT=TO_HOST:PORT", spec);
    *equals = '\0';
    struct sockaddr_storage listen_address;
    socklen_t listen_length;
    resolve(copy, &listen_address, &listen_length);
    resolve(equals + 1, &route->to_address, &route->to_address_length);
    if (asprintf(&route->name, "%s → %s", copy, equals + 1) < 0)
        die("out of memory", NULL);
    free(copy);
    int fd = socket(listen_address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0)
        die("socket", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&listen_address, listen_length) < 0 || listen(fd, 511) < 0)
        die(route->name, strerror(errno));
    route->listen_fd = fd;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s DELAY_MS LISTEN_HOST:PORT=TO_HOST:PORT...\n", argv[0]);
        return 2;
    }
    char *end;
    delay_ms = strtol(argv[1], &end, 10);
    if (*end || delay_ms < 0)
        die("not a delay in ms", argv[1]);
    /* SIGTERM and SIGINT are taken by sigwait below: blocked here, before any thread starts. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    route_count = argc - 2;
    routes = calloc((size_t)route_count, sizeof *routes);
    if (!routes)
        die("out of memory", NULL);
    for (int i = 0; i < route_count; i++)
        open_route(&routes[i], argv[i + 2]);
    for (int i = 0; i < route_count; i++)
        start_thread(run_acceptor, &routes[i]);
    printf("ready\n");
    fflush(stdout);
    int signal_number;
    while (sigwait(&stop_signals, &signal_number) != 0)
        ;
    print_stats();
    _exit(0);
}
