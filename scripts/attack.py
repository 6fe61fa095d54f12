#!/usr/bin/env python3
"""The hostile-traffic measurement of scripts/soak: hookrelay's memory and a genuine
callback's latency while an attacker holds what the listener's limits allow.

Starts the given hookrelay binary on a fresh embedded store (its endpoint a closed port:
deliveries only queue), warms it with signed callbacks, reads its idle RSS, then runs for
ATTACK_SECONDS at once:
  - HELD connections that dribble request headers (one byte a second), reconnecting as
    soon as the listener closes them (the header deadline);
  - BODIES connections that each declare a 1 MiB unsigned body and send it slowly,
    reconnecting when answered (503 over the unverified-bytes budget, 408 at the body
    deadline, 401 once read);
  - one genuine signed callback every 200 ms, each on a new connection, timed.
Then stops the attacker and reads RSS again after SETTLE seconds. Prints one JSON line:
idle / peak / after RSS in MiB, the probes' latency and statuses, and whether the
acceptance bounds hold (every probe 2xx within 1 s; peak <= idle + unverified budget +
64 MiB; after <= idle + 64 MiB).
"""

import asyncio
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

BINARY = sys.argv[1]
HELD = int(os.environ.get("ATTACK_HELD", "2000"))
BODIES = int(os.environ.get("ATTACK_BODIES", "1500"))
SECONDS = float(os.environ.get("ATTACK_SECONDS", "30"))
SETTLE = float(os.environ.get("ATTACK_SETTLE", "15"))
BUDGET_MIB = 64
SECRET = "attack-app-secret"


def free_ports(n):
    """n distinct free ports: all held at once while chosen, so none is named twice."""
    held = [socket.socket() for _ in range(n)]
    try:
        for s in held:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def signed_status(i):
    body = json.dumps({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": "1"},
            "statuses": [{"id": f"wamid.attack{i}", "status": "delivered",
                          "timestamp": str(int(time.time())),
                          "recipient_id": "15551234567"}]}}]}],
    }).encode()
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, sig


async def probe(port, body, sig):
    """Posts one signed callback with curl (its own process, so the attacker's busy event
    loop does not count in the time); (status, seconds) as curl measured them."""
    proc = await asyncio.create_subprocess_exec(
        "curl", "-s", "-o", "/dev/null", "-m", "10", "-w", "%{http_code} %{time_total}",
        "-H", "content-type: application/json", "-H", f"x-hub-signature-256: sha256={sig}",
        "--data-binary", "@-", f"http://127.0.0.1:{port}/wa",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate(body)
    try:
        status, seconds = out.decode().split()
        return int(status), float(seconds)
    except ValueError:
        return 0, 10.0


async def request(port, body, sig, timeout=10.0):
    """Posts one signed callback on a new connection; (status, seconds)."""
    start = time.monotonic()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        head = (f"POST /wa HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                f"x-hub-signature-256: sha256={sig}\r\ncontent-length: {len(body)}\r\n"
                f"connection: close\r\n\r\n").encode()
        w.write(head + body)
        await w.drain()
        line = await asyncio.wait_for(r.readline(), timeout)
        w.close()
        status = int(line.split()[1]) if line else 0
    except (OSError, asyncio.TimeoutError, ValueError, IndexError):
        status = 0
    return status, time.monotonic() - start


async def held(port, stop):
    """Holds a connection dribbling headers; reconnects when it is closed."""
    while not stop.is_set():
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"POST /wa HTTP/1.1\r\nHost: x\r\n")
            await w.drain()
            while not stop.is_set():
                w.write(b"x")
                await w.drain()
                try:
                    if await asyncio.wait_for(r.read(1024), 1.0) == b"":
                        break
                except asyncio.TimeoutError:
                    pass
            w.close()
        except OSError:
            await asyncio.sleep(0.1)


async def big_body(port, stop):
    """Declares a 1 MiB unsigned body and sends it in 64 KiB pieces; reconnects when
    answered."""
    piece = b"0" * 65536
    while not stop.is_set():
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write((f"POST /wa HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                     f"x-hub-signature-256: sha256=00\r\ncontent-length: {1 << 20}\r\n\r\n").encode())
            for _ in range(16):
                if stop.is_set():
                    break
                w.write(piece)
                await w.drain()
                try:
                    if await asyncio.wait_for(r.read(1024), 0.5) != b"":
                        break  # answered (503, 401, 408): start again
                except asyncio.TimeoutError:
                    pass
            w.close()
        except OSError:
            await asyncio.sleep(0.1)


async def main():
    port, admin = free_ports(2)
    tmp = tempfile.mkdtemp(prefix="hookrelay-attack-")
    config = os.path.join(tmp, "hookrelay.yaml")
    with open(config, "w") as f:
        f.write(f"""listen: 127.0.0.1:{port}
admin: 127.0.0.1:{admin}
upstream: http://127.0.0.1:9
store: {{ kind: embedded, path: {tmp}/data }}
limits: {{ unverified_bytes: {BUDGET_MIB}MiB }}
callbacks:
  - path: /wa
    provider: meta_whatsapp
    verify: {{ app_secret: {SECRET} }}
endpoints:
  - name: crm
    url: http://127.0.0.1:9/hook
""")
    log = open(os.path.join(tmp, "hookrelay.log"), "w")
    proc = subprocess.Popen([BINARY, "run", "-c", config], stdout=log, stderr=log,
                            env={**os.environ, "RUST_LOG": "warn"})
    try:
        for _ in range(300):
            if (await request(port, *signed_status(0), timeout=1.0))[0] == 200:
                break
            await asyncio.sleep(0.1)
        else:
            raise SystemExit("hookrelay did not start: see " + log.name)
        for i in range(1, 200):
            await request(port, *signed_status(i))
        await asyncio.sleep(2)
        idle = rss_mib(proc.pid)

        stop = asyncio.Event()
        tasks = [asyncio.create_task(held(port, stop)) for _ in range(HELD)]
        tasks += [asyncio.create_task(big_body(port, stop)) for _ in range(BODIES)]
        probes, peak, i = [], idle, 1000
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            i += 1
            sent = asyncio.create_task(probe(port, *signed_status(i)))
            await asyncio.sleep(0.2)
            peak = max(peak, rss_mib(proc.pid))
            if sent.done():
                probes.append(sent.result())
            else:
                probes.append(await sent)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(SETTLE)
        after = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
    statuses = {}
    for status, _ in probes:
        statuses[status] = statuses.get(status, 0) + 1
    worst = max(s for _, s in probes)
    ok = all(st // 100 == 2 and s <= 1.0 for st, s in probes)
    print(json.dumps({
        "held": HELD, "bodies": BODIES, "seconds": SECONDS,
        "rss_idle_mib": round(idle, 1), "rss_peak_mib": round(peak, 1),
        "rss_after_mib": round(after, 1),
        "probes": len(probes), "probe_statuses": statuses,
        "probe_worst_s": round(worst, 3),
        "probes_ok": ok,
        "peak_ok": peak <= idle + BUDGET_MIB + 64,
        "after_ok": after <= idle + 64,
    }))


asyncio.run(main())
