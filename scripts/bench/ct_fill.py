#!/usr/bin/env python3
"""Keeps a node's conntrack map full for scripts/bench/ct-gc.sh: every PERIOD seconds it writes
COUNT entries (half expired, half live for LIVE_SECS more) into the pinned map with one
BPF_MAP_UPDATE_BATCH, so that each garbage collection sweep walks a full map and deletes half of it.
The addresses are 10.200.0.0/16 clients to 10.201.0.1:80, which no lab flow uses.

usage: ct_fill.py PIN [COUNT] [PERIOD] [LIVE_SECS]   (runs until killed; needs root)
"""

import ctypes
import os
import signal
import struct
import sys
import time

SYS_BPF = 321  # x86_64
BPF_OBJ_GET = 7
BPF_MAP_UPDATE_BATCH = 26
CT_SERVICE, CT_EGRESS = 1, 2
SEC = 1_000_000_000

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def bpf(cmd, attr):
    rc = libc.syscall(SYS_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


class ObjGet(ctypes.Structure):
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32), ("file_flags", ctypes.c_uint32)]


class Batch(ctypes.Structure):
    _fields_ = [
        ("in_batch", ctypes.c_uint64),
        ("out_batch", ctypes.c_uint64),
        ("keys", ctypes.c_uint64),
        ("values", ctypes.c_uint64),
        ("count", ctypes.c_uint32),
        ("map_fd", ctypes.c_uint32),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


def keys(count):
    # struct ct4_key: saddr, daddr (network order), sport, dport (network order), proto, dir, pad[2]
    out = bytearray()
    for i in range(count):
        saddr = bytes([10, 200, (i >> 8) & 0xFF, i & 0xFF])
        sport = 1024 + (i >> 16)
        direction = CT_EGRESS if i % 2 else CT_SERVICE
        out += saddr + bytes([10, 201, 0, 1]) + struct.pack("!HH", sport, 80) + bytes([6, direction, 0, 0])
    return bytes(out)


def values(count, now):
    # struct ct_entry: expires_ns, packets, bytes, backend_id, rev_nat_index, flags, tcp_flags.
    # Per four entries (one per client pair, both directions): two live, two expired.
    entry = lambda expires: struct.pack("=QQQIHBB", expires, 1, 60, 0, 0, 0, 0)
    four = entry(now + LIVE_SECS * SEC) * 2 + entry(max(now - SEC, 1)) * 2
    return (four * (count // 4 + 1))[: count * 32]


def main():
    global LIVE_SECS
    pin = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 262144
    period = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    LIVE_SECS = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    path = ctypes.create_string_buffer(pin.encode())
    fd = bpf(BPF_OBJ_GET, ObjGet(ctypes.addressof(path), 0, 0))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    key_buf = ctypes.create_string_buffer(keys(count), count * 16)
    while True:
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        value_buf = ctypes.create_string_buffer(values(count, now), count * 32)
        attr = Batch(0, 0, ctypes.addressof(key_buf), ctypes.addressof(value_buf), count, fd, 0, 0)
        try:
            bpf(BPF_MAP_UPDATE_BATCH, attr)
        except OSError as e:
            print(f"ct_fill: update batch stopped after {attr.count} entries: {e}", file=sys.stderr)
        time.sleep(period)


if __name__ == "__main__":
    main()
