/*
 * Short connections per second: WORKERS connections in flight at all times, each
 * connect, 100 bytes up (after the 'e' mode byte), 100 bytes back (101 from a plain
 * echo server, BENCHTOOL_PURE=1), close. One epoll loop drives them all, so the
 * generator spends its CPU on syscalls, not on threads. With COUNT, exactly COUNT
 * connections are made and the time is until the last one ended (SECONDS bounds it).
 */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define PAYLOAD 100
#define OP_TIMEOUT_S 5.0
#define MAX_WORKERS 1024
#define MAX_KINDS 16

enum { IDLE, CONNECTING, READING };

struct slot {
  int fd;
  int st;
  int got;
  double started;
};

static struct { const char *name; int count; } kinds[MAX_KINDS];
static int nkinds, failed, ok, expect = PAYLOAD;
static int ep;
static struct sockaddr_in target;
static unsigned char *msg;
static size_t msg_len;

static void count_failure(const char *name) {
  failed++;
  for (int i = 0; i < nkinds; i++) {
    if (strcmp(kinds[i].name, name) == 0) {
      kinds[i].count++;
      return;
    }
  }
  if (nkinds < MAX_KINDS) kinds[nkinds++] = (typeof(kinds[0])){ name, 1 };
}

static void finish(struct slot *s, const char *failure) {
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  s->st = IDLE;
  if (failure) count_failure(failure);
  else ok++;
}

static void send_request(struct slot *s) {
  if (write(s->fd, msg, msg_len) != (ssize_t)msg_len) return finish(s, errno ? errname(errno) : "short write");
  s->st = READING;
  s->got = 0;
  struct epoll_event e = { .events = EPOLLIN, .data.ptr = s };
  epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &e);
}

static void start(struct slot *s) {
  s->started = now_s();
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) return finish(s, errname(errno));
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct epoll_event e = { .events = EPOLLOUT, .data.ptr = s };
  epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &e);
  s->st = CONNECTING;
  if (connect(s->fd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS) finish(s, errname(errno));
}

static void on_event(struct slot *s, uint32_t ev) {
  if (s->st == CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return finish(s, errname(err));
    if (ev & EPOLLOUT) send_request(s);
    return;
  }
  unsigned char buf[PAYLOAD + 1];
  ssize_t r = read(s->fd, buf, (size_t)(expect - s->got));
  if (r < 0 && errno == EAGAIN) return;
  if (r <= 0) return finish(s, r == 0 ? "eof" : errname(errno));
  s->got += (int)r;
  if (s->got == expect) finish(s, NULL);
}

/* benchtool conns HOST PORT WORKERS SECONDS [COUNT] */
int run_conns(int argc, char **argv) {
  if (argc < 4) return 2;
  int workers = atoi(argv[2]);
  double seconds = atof(argv[3]);
  int count = argc > 4 ? atoi(argv[4]) : 0, begun = 0;
  if (workers < 1 || workers > MAX_WORKERS || !(seconds > 0) || count < 0) return 2;
  if (pure_echo()) expect = PAYLOAD + 1;
  target = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
  if (inet_pton(AF_INET, argv[0], &target.sin_addr) != 1) return 2;
  /* BENCH_PRELUDE: bytes a names port routes by (an HTTP request naming the host), sent first. */
  const char *prelude = getenv("BENCH_PRELUDE");
  size_t pre = prelude == NULL ? 0 : strlen(prelude);
  msg_len = pre + PAYLOAD + 1;
  msg = malloc(msg_len);
  if (pre > 0) memcpy(msg, prelude, pre);
  memset(msg + pre, 'c', PAYLOAD + 1);
  msg[pre] = 'e';
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct slot *slots = calloc((size_t)workers, sizeof *slots);
  for (int i = 0; i < workers; i++) slots[i] = (struct slot){ .fd = -1, .st = IDLE };
  double cpu0 = cpu_self_s(), t0 = now_s(), end = t0 + seconds;
  struct epoll_event events[MAX_WORKERS];
  for (double t = t0; t < end && (count == 0 || ok + failed < count); t = now_s()) {
    for (int i = 0; i < workers; i++) {
      if (slots[i].st == IDLE && (count == 0 || begun < count)) {
        begun++;
        start(&slots[i]);
      } else if (slots[i].st != IDLE && t - slots[i].started > OP_TIMEOUT_S) {
        finish(&slots[i], "timeout");
      }
    }
    int n = epoll_wait(ep, events, workers, 20);
    for (int i = 0; i < n; i++) on_event(events[i].data.ptr, events[i].events);
  }
  double elapsed = now_s() - t0;
  /* Connections still in flight at the end are neither successes nor failures. */
  for (int i = 0; i < workers; i++) if (slots[i].fd >= 0) close(slots[i].fd);
  printf("{\"ok\":%d,\"failed\":%d,\"seconds\":%.4f,\"cpu\":%.4f,\"errors\":{", ok, failed, elapsed, cpu_self_s() - cpu0);
  for (int i = 0; i < nkinds; i++) printf("%s\"%s\":%d", i ? "," : "", kinds[i].name, kinds[i].count);
  printf("}}\n");
  free(slots);
  return 0;
}
