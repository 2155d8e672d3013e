/*
 * benchtool: the C backend and load generator of `npm run bench`.
 *
 * One binary, several modes (see main.c). Written in C so that neither the server
 * behind every path nor the client in front of it is what the benchmark measures:
 * the forwarder in between should be the slowest thing on the machine.
 *
 * The backend protocol (scripts/relayed-backend.ts implements the same one in Node):
 * the first byte of a command picks its mode.
 *   'e'            echo every later byte until EOF (the connection stays in echo mode)
 *   's' + u64 BE   sink: read exactly that many bytes, then answer one byte 'k'
 *   'r' + u64 BE   source: send that many bytes
 * After a sink or a source the connection is ready for the next command.
 * Every result is one JSON object on one line of stdout.
 */
#ifndef BENCHTOOL_COMMON_H
#define BENCHTOOL_COMMON_H
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

double now_s(void);
double cpu_self_s(void);
/* Blocking TCP connection with TCP_NODELAY and send/receive timeouts; -errno on failure. */
int connect_to(const char *host, int port, int timeout_s);
/* 0, or -errno (-EPIPE when the peer closed before n bytes). */
int write_all(int fd, const void *buf, size_t n);
int read_exact(int fd, void *buf, size_t n);
void put_be64(unsigned char *p, uint64_t v);
uint64_t get_be64(const unsigned char *p);
/* Sorts in place, then picks the p-quantile (0..1) by nearest rank. */
double quantile(double *values, size_t n, double p);
const char *errname(int err);
/* BENCHTOOL_PURE=1: the peer is a plain echo server, which echoes the mode byte 'e' too. */
int pure_echo(void);

int run_server(int argc, char **argv);
int run_tput(int argc, char **argv);
int run_rtt(int argc, char **argv);
int run_first(int argc, char **argv);
int run_conns(int argc, char **argv);
int run_hold(int argc, char **argv);
int run_wire(int argc, char **argv);

#endif
