/*
 * Concurrent idle tunnels: opens N connections in batches, checks that each echoes,
 * then holds them and obeys lines on stdin, so the bench can measure the forwarders'
 * memory between steps:  "check" (every connection echoes one more byte), "close".
 * It answers every step with one JSON line. Stdin closing also means close.
 */
#include "common.h"
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define ROUND_TIMEOUT_S 30.0

/* Writes `byte` to fds[from..to) and counts how many echo it back in time. */
static int round_trip(const int *fds, int from, int to, char byte, int *failed_fds) {
  int ep = epoll_create1(EPOLL_CLOEXEC), waiting = 0, echoed = 0;
  for (int i = from; i < to; i++) {
    if (fds[i] < 0) continue;
    if (write_all(fds[i], &byte, 1) != 0) {
      (*failed_fds)++;
      continue;
    }
    struct epoll_event e = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e);
    waiting++;
  }
  struct epoll_event events[512];
  double deadline = now_s() + ROUND_TIMEOUT_S;
  while (waiting > 0 && now_s() < deadline) {
    int n = epoll_wait(ep, events, 512, 100);
    for (int k = 0; k < n; k++) {
      int i = (int)events[k].data.u32;
      char c = 0;
      ssize_t r = read(fds[i], &c, 1);
      if (r < 0 && errno == EAGAIN) continue;
      epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
      waiting--;
      if (r == 1 && c == byte) echoed++;
      else (*failed_fds)++;
    }
  }
  close(ep);
  return echoed;
}

/* benchtool hold HOST PORT N BATCH */
int run_hold(int argc, char **argv) {
  if (argc < 4) return 2;
  int port = atoi(argv[1]), n = atoi(argv[2]), batch = atoi(argv[3]);
  if (n < 1 || batch < 1) return 2;
  int *fds = malloc(sizeof(int) * (size_t)n);
  int open = 0, refused = 0, echoed = 0, bad = 0;
  char last[64] = "";
  double t0 = now_s();
  for (int from = 0; from < n; from += batch) {
    int to = from + batch < n ? from + batch : n;
    for (int i = from; i < to; i++) {
      fds[i] = connect_to(argv[0], port, 10);
      if (fds[i] >= 0) open++;
      else {
        refused++;
        snprintf(last, sizeof last, "%s", errname(-fds[i]));
      }
    }
    /* The mode byte goes with the first probe: 'e' then 'x'. */
    for (int i = from; i < to; i++) if (fds[i] >= 0 && write_all(fds[i], "e", 1) != 0) bad++;
    echoed += round_trip(fds, from, to, 'x', &bad);
  }
  printf("{\"phase\":\"open\",\"open\":%d,\"echoed\":%d,\"refused\":%d,\"failed\":%d,\"seconds\":%.3f,\"lastError\":\"%s\"}\n",
         open, echoed, refused, bad, now_s() - t0, last);
  fflush(stdout);
  char line[64];
  while (fgets(line, sizeof line, stdin) != NULL) {
    if (strncmp(line, "check", 5) == 0) {
      int before = bad;
      double t = now_s();
      int ok = round_trip(fds, 0, n, 'y', &bad);
      printf("{\"phase\":\"check\",\"echoed\":%d,\"failed\":%d,\"seconds\":%.3f}\n", ok, bad - before, now_s() - t);
      fflush(stdout);
    } else if (strncmp(line, "close", 5) == 0) {
      break;
    }
  }
  for (int i = 0; i < n; i++) if (fds[i] >= 0) close(fds[i]);
  printf("{\"phase\":\"closed\"}\n");
  fflush(stdout);
  free(fds);
  return 0;
}
