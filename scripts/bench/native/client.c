/*
 * Load generator modes that need no event loop: bulk streams (one thread each, so
 * four streams can use both cores), ping-pong on one connection, and sequential
 * new connections timed from connect() to the first echoed byte.
 */
#include "common.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IO_TIMEOUT_S 60

struct stream {
  int fd;
  int up;
  uint64_t bytes;
  double end;
  int err;
};

static void *stream_main(void *arg) {
  struct stream *s = arg;
  size_t size = 1 << 20;
  unsigned char *buf = malloc(size);
  unsigned char head[9];
  head[0] = s->up ? 's' : 'r';
  put_be64(head + 1, s->bytes);
  int err = buf == NULL ? -ENOMEM : write_all(s->fd, head, sizeof head);
  if (buf != NULL) memset(buf, 'a', size);
  for (uint64_t left = s->bytes; err == 0 && left > 0;) {
    size_t k = left < size ? (size_t)left : size;
    if (s->up) {
      err = write_all(s->fd, buf, k);
      left -= k;
    } else {
      ssize_t r = read(s->fd, buf, k);
      if (r > 0) left -= (uint64_t)r;
      else err = r == 0 ? -EPIPE : (errno == EINTR ? 0 : -errno);
    }
  }
  /* An upload counts only once the backend has read every byte: it answers 'k'. */
  if (err == 0 && s->up) err = read_exact(s->fd, head, 1);
  s->end = now_s();
  s->err = err;
  free(buf);
  return NULL;
}

/* benchtool tput HOST PORT up|down BYTES_PER_STREAM STREAMS */
int run_tput(int argc, char **argv) {
  if (argc < 5) return 2;
  int port = atoi(argv[1]), up = strcmp(argv[2], "up") == 0, n = atoi(argv[4]);
  uint64_t bytes = strtoull(argv[3], NULL, 10);
  if (n < 1 || n > 64) return 2;
  struct stream streams[64];
  pthread_t threads[64];
  for (int i = 0; i < n; i++) {
    streams[i] = (struct stream){ .fd = connect_to(argv[0], port, IO_TIMEOUT_S), .up = up, .bytes = bytes };
    if (streams[i].fd < 0) {
      printf("{\"error\":\"connect: %s\"}\n", errname(-streams[i].fd));
      return 1;
    }
  }
  double cpu0 = cpu_self_s(), t0 = now_s(), end = t0;
  for (int i = 0; i < n; i++) pthread_create(&threads[i], NULL, stream_main, &streams[i]);
  int err = 0;
  for (int i = 0; i < n; i++) {
    pthread_join(threads[i], NULL);
    if (streams[i].err != 0) err = streams[i].err;
    if (streams[i].end > end) end = streams[i].end;
    close(streams[i].fd);
  }
  if (err != 0) {
    printf("{\"error\":\"transfer: %s\"}\n", errname(-err));
    return 1;
  }
  printf("{\"bytes\":%llu,\"seconds\":%.6f,\"cpu\":%.4f}\n", (unsigned long long)bytes * (unsigned)n, end - t0, cpu_self_s() - cpu0);
  return 0;
}

/* benchtool rtt HOST PORT SIZE COUNT WARMUP: ping-pongs of SIZE bytes on one connection. */
int run_rtt(int argc, char **argv) {
  if (argc < 5) return 2;
  int port = atoi(argv[1]), size = atoi(argv[2]), count = atoi(argv[3]), warm = atoi(argv[4]);
  if (size < 1 || size > (1 << 20) || count < 1) return 2;
  int fd = connect_to(argv[0], port, IO_TIMEOUT_S);
  if (fd < 0) {
    printf("{\"error\":\"connect: %s\"}\n", errname(-fd));
    return 1;
  }
  unsigned char *buf = malloc((size_t)size);
  double *us = malloc(sizeof(double) * (size_t)count);
  memset(buf, 'p', (size_t)size);
  int err = write_all(fd, "e", 1);
  for (int i = 0; err == 0 && i < warm + count; i++) {
    double t = now_s();
    err = write_all(fd, buf, (size_t)size);
    if (err == 0) err = read_exact(fd, buf, (size_t)size);
    if (i >= warm) us[i - warm] = (now_s() - t) * 1e6;
  }
  close(fd);
  if (err != 0) {
    printf("{\"error\":\"ping-pong: %s\"}\n", errname(-err));
    return 1;
  }
  double p50 = quantile(us, (size_t)count, 0.5), p99 = quantile(us, (size_t)count, 0.99);
  printf("{\"count\":%d,\"p50\":%.2f,\"p99\":%.2f}\n", count, p50, p99);
  free(buf);
  free(us);
  return 0;
}

/*
 * benchtool first HOST PORT COUNT WARMUP [GAP_MS]: new connection, send "ex", time until the
 * first byte comes back: 'x' from the backend, or 'e' from a plain echo server
 * (BENCHTOOL_PURE=1). GAP_MS apart: arrivals that do not follow each other's close at once.
 */
int run_first(int argc, char **argv) {
  if (argc < 4) return 2;
  int port = atoi(argv[1]), count = atoi(argv[2]), warm = atoi(argv[3]);
  int gap_ms = argc > 4 ? atoi(argv[4]) : 0;
  const char expected = pure_echo() ? 'e' : 'x';
  if (count < 1) return 2;
  double *us = malloc(sizeof(double) * (size_t)count);
  int ok = 0, failed = 0;
  char last[64] = "";
  for (int i = 0; i < warm + count; i++) {
    if (i > 0 && gap_ms > 0) usleep((useconds_t)gap_ms * 1000);
    double t = now_s();
    int fd = connect_to(argv[0], port, 10);
    /* BENCH_PRELUDE: bytes a names port routes by (an HTTP request naming the host), sent first. */
    const char *prelude = getenv("BENCH_PRELUDE");
    int err = fd < 0 ? fd : prelude != NULL ? write_all(fd, prelude, strlen(prelude)) : 0;
    if (err == 0) err = write_all(fd, "ex", 2);
    char c = 0;
    if (err == 0) err = read_exact(fd, &c, 1);
    double dt = (now_s() - t) * 1e6;
    if (fd >= 0) close(fd);
    if (err != 0 || c != expected) {
      if (i >= warm) failed++;
      snprintf(last, sizeof last, "%s", err != 0 ? errname(-err) : "wrong byte");
    } else if (i >= warm) {
      us[ok++] = dt;
    }
  }
  double p50 = quantile(us, (size_t)ok, 0.5), p90 = quantile(us, (size_t)ok, 0.9), p99 = quantile(us, (size_t)ok, 0.99);
  printf("{\"count\":%d,\"failed\":%d,\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"lastError\":\"%s\"}\n", ok, failed, p50, p90, p99, last);
  free(us);
  return ok > 0 ? 0 : 1;
}
