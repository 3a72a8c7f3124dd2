#!/usr/bin/env python3
"""HTTP prober for the failover benchmark, run inside the lab's router namespace.

Starts a GET to http://VIP/ every INTERVAL seconds, each on its own connection with a short
timeout (requests overlap: a hung one does not delay the next), and prints one line per finished
request: `<start> <end> ok|fail` in Unix seconds. Runs until DURATION has passed or, once the file given with --since-file holds a Unix
time T (the moment of the failure, written by the benchmark), until a request started at or
after T has succeeded and HOLD more seconds have passed.
"""

import argparse
import asyncio
import sys
import time


async def one(vip: str, port: int, timeout: float) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(vip, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: {vip}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(65536), timeout)
        return data.startswith(b"HTTP/1.1 200")
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        writer.close()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("vip")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--timeout", type=float, default=0.1)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--since-file", default=None)
    p.add_argument("--hold", type=float, default=0.5)
    a = p.parse_args()

    stop_at = time.time() + a.duration
    since = None
    pending = set()

    def read_since():
        try:
            with open(a.since_file) as f:
                return float(f.read().strip())
        except (OSError, ValueError, TypeError):
            return None

    async def run_one(start: float) -> None:
        nonlocal stop_at, since
        ok = await one(a.vip, a.port, a.timeout)
        end = time.time()
        print(f"{start:.6f} {end:.6f} {'ok' if ok else 'fail'}", flush=True)
        if since is None and a.since_file:
            since = read_since()
        if ok and since is not None and start >= since:
            stop_at = min(stop_at, end + a.hold)

    next_start = time.time()
    while time.time() < stop_at:
        now = time.time()
        if now >= next_start:
            t = asyncio.create_task(run_one(now))
            pending.add(t)
            t.add_done_callback(pending.discard)
            next_start += a.interval
            if next_start < now:
                next_start = now + a.interval
        await asyncio.sleep(max(0.0, min(next_start, stop_at) - time.time()))
    if pending:
        await asyncio.wait(pending, timeout=a.timeout * 3)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
