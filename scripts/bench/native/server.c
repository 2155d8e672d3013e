/*
 * The backend behind every path but `relay`: one epoll loop, non-blocking sockets,
 * one shared read buffer, so ten thousand idle connections cost only kernel memory
 * and a bulk stream costs little more than the copies the kernel makes anyway.
 * Backpressure: while a reply is waiting to be written, the connection is not read.
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

enum state { CMD, HDR, ECHO, SINK, SOURCE };

struct conn {
  int fd;
  enum state st;
  char cmd;
  int hdr_len;
  unsigned char hdr[8];
  uint64_t remaining;
  unsigned char *pend; /* bytes accepted for writing that the socket did not take yet */
  size_t pend_len, pend_off;
  int eof;
};

static int ep;
static enum state first_state = CMD;
static unsigned char rbuf[256 * 1024];
static unsigned char sbuf[256 * 1024];

static void interest(struct conn *c, uint32_t events) {
  struct epoll_event e = { .events = events, .data.ptr = c };
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void drop(struct conn *c) {
  close(c->fd);
  free(c->pend);
  free(c);
}

/* Writes now what the socket takes and keeps the rest, in order, for EPOLLOUT. */
static int emit(struct conn *c, const unsigned char *p, size_t n) {
  size_t done = 0;
  if (c->pend == NULL) {
    ssize_t w = write(c->fd, p, n);
    if (w < 0 && errno != EAGAIN) return -1;
    done = w < 0 ? 0 : (size_t)w;
    if (done == n) return 0;
  }
  size_t keep = c->pend == NULL ? 0 : c->pend_len - c->pend_off;
  unsigned char *buf = malloc(keep + n - done);
  if (buf == NULL) return -1;
  if (keep > 0) memcpy(buf, c->pend + c->pend_off, keep);
  memcpy(buf + keep, p + done, n - done);
  free(c->pend);
  c->pend = buf;
  c->pend_len = keep + n - done;
  c->pend_off = 0;
  interest(c, EPOLLOUT);
  return 0;
}

static int ack(struct conn *c) {
  static const unsigned char k = 'k';
  c->st = CMD;
  return emit(c, &k, 1);
}

/* Runs the protocol over bytes just read; -1 means drop the connection. */
static int consume(struct conn *c, const unsigned char *p, size_t n) {
  size_t off = 0;
  while (off < n) {
    switch (c->st) {
    case CMD: {
      unsigned char k = p[off++];
      if (k == 'e') {
        c->st = ECHO;
      } else if (k == 's' || k == 'r') {
        c->cmd = (char)k;
        c->hdr_len = 0;
        c->st = HDR;
      } else {
        return -1;
      }
      break;
    }
    case HDR: {
      size_t take = n - off < (size_t)(8 - c->hdr_len) ? n - off : (size_t)(8 - c->hdr_len);
      memcpy(c->hdr + c->hdr_len, p + off, take);
      c->hdr_len += (int)take;
      off += take;
      if (c->hdr_len < 8) break;
      c->remaining = get_be64(c->hdr);
      if (c->cmd == 'r') {
        /* A client must not talk during a source; whatever it sent is ignored. */
        c->st = c->remaining == 0 ? CMD : SOURCE;
        if (c->st == SOURCE && c->pend == NULL) interest(c, EPOLLIN | EPOLLOUT);
        return 0;
      }
      c->st = SINK;
      if (c->remaining == 0 && ack(c) < 0) return -1;
      break;
    }
    case SINK: {
      uint64_t take = n - off < c->remaining ? n - off : c->remaining;
      c->remaining -= take;
      off += take;
      if (c->remaining == 0 && ack(c) < 0) return -1;
      break;
    }
    case ECHO:
      return emit(c, p + off, n - off);
    case SOURCE:
      return 0;
    }
  }
  return 0;
}

static int on_readable(struct conn *c) {
  ssize_t n = read(c->fd, rbuf, sizeof rbuf);
  if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
  if (n == 0) {
    if (c->pend == NULL) return -1;
    c->eof = 1; /* close once the echo of what came before EOF is written */
    return 0;
  }
  return consume(c, rbuf, (size_t)n);
}

static int on_writable(struct conn *c) {
  if (c->pend != NULL) {
    ssize_t w = write(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off);
    if (w < 0) return errno == EAGAIN ? 0 : -1;
    c->pend_off += (size_t)w;
    if (c->pend_off < c->pend_len) return 0;
    free(c->pend);
    c->pend = NULL;
    if (c->eof) return -1;
    interest(c, c->st == SOURCE ? EPOLLIN | EPOLLOUT : EPOLLIN);
    return 0;
  }
  /* Bounded per wake-up so one bulk stream cannot starve the others. */
  for (int i = 0; i < 16 && c->st == SOURCE; i++) {
    size_t k = c->remaining < sizeof sbuf ? (size_t)c->remaining : sizeof sbuf;
    ssize_t w = write(c->fd, sbuf, k);
    if (w < 0) return errno == EAGAIN ? 0 : -1;
    c->remaining -= (uint64_t)w;
    if (c->remaining == 0) {
      c->st = CMD;
      interest(c, EPOLLIN);
    }
  }
  return 0;
}

static void accept_all(int lfd) {
  for (int i = 0; i < 256; i++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return; /* EAGAIN, or EMFILE: the backlog keeps them for later */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
      close(fd);
      return;
    }
    c->fd = fd;
    c->st = first_state;
    struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
  }
}

/*
 * benchtool server [PORT [ADDRESS [echo]]]: prints {"port":N} once listening, then serves
 * until killed. ADDRESS defaults to 127.0.0.1; `echo` makes it a plain echo server (every
 * byte from the first echoed, as ./echoserver does), for the bench's --wan paths.
 */
int run_server(int argc, char **argv) {
  int port = argc > 0 ? atoi(argv[0]) : 0;
  if (argc > 2 && strcmp(argv[2], "echo") == 0) first_state = ECHO;
  memset(sbuf, 'b', sizeof sbuf);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (argc > 1 && inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) return 2;
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
    printf("{\"error\":\"%s\"}\n", errname(errno));
    return 1;
  }
  socklen_t len = sizeof addr;
  getsockname(lfd, (struct sockaddr *)&addr, &len);
  printf("{\"port\":%d}\n", ntohs(addr.sin_port));
  fflush(stdout);
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e);
  struct epoll_event events[256];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    for (int i = 0; i < n; i++) {
      struct conn *c = events[i].data.ptr;
      if (c == NULL) {
        accept_all(lfd);
        continue;
      }
      uint32_t ev = events[i].events;
      int r = 0;
      if (ev & EPOLLOUT) r = on_writable(c);
      if (r == 0 && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->pend == NULL) r = on_readable(c);
      else if (r == 0 && (ev & EPOLLERR)) r = -1;
      if (r < 0) drop(c);
    }
  }
}
