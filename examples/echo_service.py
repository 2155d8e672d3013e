#!/usr/bin/env python3
"""A relayed echo service in plain Python: the whole service side of the protocol.

Usage: python3 examples/echo_service.py RELAYHOST RELAYPORT [SECRET]
Prints "established relay address: HOST:PORT" like ./echoserver, then echoes every
client. No reconnect and no prewarm: see docs/protocol.md for those.
"""
import hashlib
import hmac
import socket
import sys
import threading


def read_line(sock):
    """One protocol line, without its LF; bytes after it stay in the socket."""
    line = b""
    while not line.endswith(b"\n"):
        byte = sock.recv(1)
        if not byte:
            raise ConnectionError("relay closed the connection")
        line += byte
        if len(line) > 1024:
            raise ValueError("line too long")
    return line.rstrip(b"\r\n").decode("ascii")


def echo(sock):
    while True:
        data = sock.recv(65536)
        if not data:
            sock.shutdown(socket.SHUT_WR)  # pass the client's FIN on
            break
        sock.sendall(data)
    sock.close()


def dial_back(host, data_port, token):
    data = socket.create_connection((host, data_port))
    data.sendall(f"DATA {token}\n".encode())
    words = read_line(data).split(" ")
    if words[0] != "CLIENT":
        data.close()  # ERR bad-token: the client is gone
        return
    # From here on, `data` is the public client words[1]:words[2].
    threading.Thread(target=echo, args=(data,), daemon=True).start()


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    secret = sys.argv[3] if len(sys.argv) > 3 else None
    control = socket.create_connection((host, port))
    control.sendall(f"HELLO 1 host={host}\n".encode())
    data_port = None
    while True:
        words = read_line(control).split(" ")
        if words[0] == "AUTH":
            context = b"tcp-relay auth v1\n"
            mac = hmac.new((secret or "").encode(), context + words[1].encode(), hashlib.sha256)
            control.sendall(f"PROOF {mac.hexdigest()}\n".encode())
        elif words[0] == "OK":
            options = dict(word.split("=", 1) for word in words[2:])
            data_port = int(options["data"])
            print(f"established relay address: {words[1]}", flush=True)
        elif words[0] == "CONNECT":
            dial_back(host, data_port, words[1])
        elif words[0] == "PING":
            control.sendall(b"PONG\n")
        elif words[0] == "ERR":
            sys.exit(f"relay refused: {' '.join(words[1:])}")
        elif words[0] == "SHUTDOWN":
            sys.exit("relay shut down")


if __name__ == "__main__":
    main()
