/* benchtool MODE ARGS...: see common.h for the protocol and each run_* for its arguments. */
#include "common.h"
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
  /* A peer that goes away must be an error to count, not a signal that kills us. */
  signal(SIGPIPE, SIG_IGN);
  /* If the bench dies without cleaning up, its helpers die with it. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return 1;
  /* Every mode is bounded in time, whatever happens to its peers. */
  const char *limit = getenv("BENCHTOOL_ALARM_S");
  alarm(limit ? (unsigned)atoi(limit) : 600);
  if (argc < 2) {
    fprintf(stderr, "usage: benchtool server|tput|rtt|first|conns|hold|wire ARGS...\n");
    return 2;
  }
  const char *mode = argv[1];
  int rc = 2;
  if (strcmp(mode, "server") == 0) rc = run_server(argc - 2, argv + 2);
  else if (strcmp(mode, "tput") == 0) rc = run_tput(argc - 2, argv + 2);
  else if (strcmp(mode, "rtt") == 0) rc = run_rtt(argc - 2, argv + 2);
  else if (strcmp(mode, "first") == 0) rc = run_first(argc - 2, argv + 2);
  else if (strcmp(mode, "conns") == 0) rc = run_conns(argc - 2, argv + 2);
  else if (strcmp(mode, "hold") == 0) rc = run_hold(argc - 2, argv + 2);
  else if (strcmp(mode, "wire") == 0) rc = run_wire(argc - 2, argv + 2);
  if (rc == 2) fprintf(stderr, "benchtool %s: bad arguments\n", mode);
  fflush(stdout);
  return rc;
}
