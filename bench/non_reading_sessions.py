"""100 WebSocket sessions that never read, each forwarded 40 offers of 240 KiB by one sender; prints the
server's resident memory before, at the peak, and just after everyone left (read /proc/<pid>/status
again some seconds later to see it handed back).

    python3 -m venv /tmp/wsenv && /tmp/wsenv/bin/pip install websockets
    ./target/release/zajel-signal --ws-listen 127.0.0.1:18105 --rate-limit-burst 1000000 \
        --messages-per-minute-per-ip 100000000 &
    /tmp/wsenv/bin/python bench/non_reading_sessions.py $! ws://127.0.0.1:18105/
"""
import asyncio, json, sys, subprocess, os, time, base64
import websockets
PID = int(sys.argv[1]); URL = sys.argv[2]
def rss():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1])
KEY = base64.b64encode(bytes(32)).decode()
ALPHA = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
def code(i): return "SL" + ALPHA[i // 32 % 32] + ALPHA[i % 32] + "Z2"
async def main():
    before = rss()
    sleepers = []
    for i in range(100):
        ws = await websockets.connect(URL, max_size=None, max_queue=1)
        await ws.recv()
        await ws.send(json.dumps({"type": "register", "pairingCode": code(i), "publicKey": KEY, "requestId": 1}))
        await ws.recv()
        sleepers.append(ws)
    # From here on the sleepers read nothing.
    sender = await websockets.connect(URL, max_size=None)
    await sender.recv()
    await sender.send(json.dumps({"type": "register", "pairingCode": "SENDR2", "publicKey": KEY}))
    await sender.recv()
    payload = {"sdp": "x" * (240 * 1024)}
    peak = 0
    for round in range(40):
        for i in range(100):
            await sender.send(json.dumps({"type": "offer", "target": code(i), "payload": payload}))
        await sender.send(json.dumps({"type": "ping"}))
        while json.loads(await sender.recv())["type"] != "pong":
            pass
        peak = max(peak, rss())
    for ws in sleepers:
        ws.transport.abort()
    await sender.close()
    await asyncio.sleep(3)
    after = rss()
    print(f"RSS before {before} KiB, peak {peak} KiB, after everyone left {after} KiB")
asyncio.run(main())
