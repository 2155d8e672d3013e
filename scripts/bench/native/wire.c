/*
 * The links of the bench's --wan network where the kernel has no netem qdisc (this
 * machine's does not): a point-to-point TUN device in each of two network namespaces,
 * and this process in between, which holds every packet for DELAY ± JITTER before
 * passing it to the other end. Order is kept per direction (a packet never leaves before
 * the one ahead of it), as on a real path without reordering. A full queue drops, like
 * a router's; the drops are counted and printed when the wire is stopped, apart from the
 * packets the other end refused (sent before it was up: IPv6 router solicitations).
 */
#include "common.h"
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_ENDS 8
#define QUEUE 4096
#define PACKET 2048

struct packet {
  double due;
  uint16_t len;
  unsigned char data[PACKET];
};

/* The packets on their way to one end, oldest first. */
struct queue {
  struct packet *ring;
  size_t head, count;
  double last_due;
};

static int fds[MAX_ENDS];
static struct queue queues[MAX_ENDS];
static int nends, timer, ep;
static double delay_s, jitter_s;
static unsigned long long passed, dropped, refused;
static volatile sig_atomic_t stopping;

static void on_stop(int sig) {
  (void)sig;
  stopping = 1;
}

/* Creates the TUN device IFNAME inside the network namespace NS (by its name under /run/netns). */
static int open_end(const char *spec, int home) {
  char ns[128];
  const char *colon = strchr(spec, ':');
  if (colon == NULL || (size_t)(colon - spec) >= sizeof ns - 16 || strlen(colon + 1) >= IFNAMSIZ) return -EINVAL;
  snprintf(ns, sizeof ns, "/run/netns/%.*s", (int)(colon - spec), spec);
  int nsfd = open(ns, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) return -errno;
  int fd = -1, err = 0;
  if (setns(nsfd, CLONE_NEWNET) < 0) err = -errno;
  if (err == 0 && (fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC)) < 0) err = -errno;
  struct ifreq ifr = { .ifr_flags = IFF_TUN | IFF_NO_PI };
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", colon + 1);
  if (err == 0 && ioctl(fd, TUNSETIFF, &ifr) < 0) err = -errno;
  close(nsfd);
  if (setns(home, CLONE_NEWNET) < 0 && err == 0) err = -errno;
  if (err != 0 && fd >= 0) close(fd);
  return err != 0 ? err : fd;
}

static double jitter(void) {
  return jitter_s * (2.0 * ((double)random() / (double)RAND_MAX) - 1.0);
}

static void arm_timer(void) {
  double next = 0;
  for (int i = 0; i < nends; i++) {
    struct queue *q = &queues[i];
    if (q->count > 0 && (next == 0 || q->ring[q->head].due < next)) next = q->ring[q->head].due;
  }
  struct itimerspec when = { 0 };
  if (next > 0) {
    when.it_value.tv_sec = (time_t)next;
    when.it_value.tv_nsec = (long)((next - (double)(time_t)next) * 1e9);
    if (when.it_value.tv_sec == 0 && when.it_value.tv_nsec == 0) when.it_value.tv_nsec = 1;
  }
  timerfd_settime(timer, TFD_TIMER_ABSTIME, &when, NULL);
}

/* Everything the end `from` has sent, queued for its peer (ends are paired 0-1, 2-3, ...). */
static void take(int from) {
  struct queue *q = &queues[from ^ 1];
  for (;;) {
    unsigned char scratch[PACKET];
    struct packet *slot = q->count < QUEUE ? &q->ring[(q->head + q->count) % QUEUE] : NULL;
    ssize_t n = read(fds[from], slot ? slot->data : scratch, PACKET);
    if (n <= 0) return;
    if (slot == NULL) {
      dropped++;
      continue;
    }
    double due = now_s() + delay_s + jitter();
    slot->due = due > q->last_due ? due : q->last_due;
    slot->len = (uint16_t)n;
    q->last_due = slot->due;
    q->count++;
  }
}

static void deliver(void) {
  double now = now_s();
  for (int i = 0; i < nends; i++) {
    struct queue *q = &queues[i];
    while (q->count > 0 && q->ring[q->head].due <= now) {
      struct packet *p = &q->ring[q->head];
      if (write(fds[i], p->data, p->len) == (ssize_t)p->len) passed++;
      else refused++;
      q->head = (q->head + 1) % QUEUE;
      q->count--;
    }
  }
}

/* benchtool wire DELAY_US JITTER_US NS:IFNAME NS:IFNAME [NS:IFNAME NS:IFNAME ...] */
int run_wire(int argc, char **argv) {
  if (argc < 4 || (argc - 2) % 2 != 0 || argc - 2 > MAX_ENDS) return 2;
  delay_s = atof(argv[0]) / 1e6;
  jitter_s = atof(argv[1]) / 1e6;
  if (!(delay_s >= 0) || !(jitter_s >= 0) || jitter_s > delay_s) return 2;
  /* Wake-ups within microseconds of the due time, not the default 50 µs slack. */
  prctl(PR_SET_TIMERSLACK, 1UL);
  srandom((unsigned)getpid());
  int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  nends = argc - 2;
  ep = epoll_create1(EPOLL_CLOEXEC);
  for (int i = 0; i < nends; i++) {
    fds[i] = open_end(argv[i + 2], home);
    if (fds[i] < 0) {
      printf("{\"error\":\"tun %s: %s\"}\n", argv[i + 2], errname(-fds[i]));
      return 1;
    }
    queues[i].ring = malloc(sizeof(struct packet) * QUEUE);
    if (queues[i].ring == NULL) return 1;
    struct epoll_event e = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e);
  }
  timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  struct epoll_event e = { .events = EPOLLIN, .data.u32 = MAX_ENDS };
  epoll_ctl(ep, EPOLL_CTL_ADD, timer, &e);
  struct sigaction stop = { .sa_handler = on_stop };
  sigaction(SIGTERM, &stop, NULL);
  sigaction(SIGINT, &stop, NULL);
  printf("{\"ready\":%d}\n", nends);
  fflush(stdout);
  struct epoll_event events[MAX_ENDS + 1];
  while (!stopping) {
    int n = epoll_wait(ep, events, MAX_ENDS + 1, -1);
    for (int i = 0; i < n; i++) {
      uint32_t end = events[i].data.u32;
      if (end == MAX_ENDS) {
        uint64_t ticks;
        if (read(timer, &ticks, sizeof ticks) < 0) continue;
      } else {
        take((int)end);
      }
    }
    deliver();
    arm_timer();
  }
  printf("{\"passed\":%llu,\"dropped\":%llu,\"refused\":%llu}\n", passed, dropped, refused);
  return 0;
}
