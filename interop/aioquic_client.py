"""aioquic, an independent QUIC and HTTP/3 stack, against a running zajel-signal: over raw QUIC
(ALPN zajel/1) and over WebTransport, two clients find each other by an hourly token and the earlier one
is pushed the match.

    python interop/aioquic_client.py --http http://127.0.0.1:8080 --quic 127.0.0.1:4433
"""

import argparse
import asyncio
import base64
import hashlib
import json
import ssl
import sys
import time
import urllib.request

try:
    import cbor2
    from aioquic.asyncio import QuicConnectionProtocol, connect
    from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection
    from aioquic.h3.events import HeadersReceived, WebTransportStreamDataReceived
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import HandshakeCompleted, StreamDataReceived
    from cryptography.hazmat.primitives.serialization import Encoding
except ImportError as missing:
    sys.exit(f"aioquic interop: FAILED: {missing} (pip install aioquic cbor2)")

STEP_TIMEOUT = 10.0


def fail(message):
    sys.exit(f"aioquic interop: FAILED: {message}")


def frame(message):
    payload = cbor2.dumps(message)
    return len(payload).to_bytes(4, "big") + payload


class Frames:
    """Collects the frames of one stream as they arrive."""

    def __init__(self):
        self.buffer = b""
        self.queue = asyncio.Queue()

    def feed(self, data):
        self.buffer += data
        while len(self.buffer) >= 4:
            length = int.from_bytes(self.buffer[:4], "big")
            if len(self.buffer) < 4 + length:
                break
            self.queue.put_nowait(cbor2.loads(self.buffer[4 : 4 + length]))
            self.buffer = self.buffer[4 + length :]

    async def next(self, what):
        try:
            return await asyncio.wait_for(self.queue.get(), STEP_TIMEOUT)
        except asyncio.TimeoutError:
            fail(f"no {what} within {STEP_TIMEOUT} s")


class ZajelProtocol(QuicConnectionProtocol):
    """Both flavours: raw QUIC streams, or WebTransport streams inside an HTTP/3 session."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.streams = {}
        self.push_stream = None
        self.h3 = None
        self.session_id = None
        self.session_ready = asyncio.get_event_loop().create_future()
        self.handshake_done = asyncio.get_event_loop().create_future()

    def frames(self, stream_id):
        return self.streams.setdefault(stream_id, Frames())

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted):
            if event.alpn_protocol in H3_ALPN:
                self.h3 = H3Connection(self._quic, enable_webtransport=True)
            if not self.handshake_done.done():
                self.handshake_done.set_result(event.alpn_protocol)
        if self.h3 is None:
            if isinstance(event, StreamDataReceived):
                if self.push_stream is None and event.stream_id % 4 == 3:
                    self.push_stream = event.stream_id
                self.frames(event.stream_id).feed(event.data)
            return
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived) and h3_event.stream_id == self.session_id:
                status = dict(h3_event.headers).get(b":status")
                if not self.session_ready.done():
                    self.session_ready.set_result(status)
            elif isinstance(h3_event, WebTransportStreamDataReceived):
                if self.push_stream is None and h3_event.stream_id % 4 == 3:
                    self.push_stream = h3_event.stream_id
                self.frames(h3_event.stream_id).feed(h3_event.data)

    async def open_webtransport(self, authority):
        await asyncio.wait_for(self.handshake_done, STEP_TIMEOUT)
        deadline = time.monotonic() + STEP_TIMEOUT
        while self.h3.received_settings is None:
            if time.monotonic() > deadline:
                fail("no HTTP/3 SETTINGS from the server")
            await asyncio.sleep(0.01)
        self.session_id = self._quic.get_next_available_stream_id()
        self.h3.send_headers(
            self.session_id,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"webtransport"),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", b"/"),
                (b"origin", b"https://" + authority.encode()),
                (b"sec-webtransport-http3-draft02", b"1"),
            ],
        )
        self.transmit()
        status = await asyncio.wait_for(self.session_ready, STEP_TIMEOUT)
        if status != b"200":
            fail(f"WebTransport CONNECT answered {status!r}")

    async def server_info(self):
        deadline = time.monotonic() + STEP_TIMEOUT
        while self.push_stream is None:
            if time.monotonic() > deadline:
                fail("the server opened no push stream")
            await asyncio.sleep(0.01)
        return await self.frames(self.push_stream).next("server_info")

    async def next_push(self):
        return await self.frames(self.push_stream).next("push")

    async def request(self, message):
        if self.h3 is None:
            stream_id = self._quic.get_next_available_stream_id()
        else:
            stream_id = self.h3.create_webtransport_stream(self.session_id)
            # aioquic 1.7.2 would parse the answer as HTTP/3 frames unless the stream is marked.
            with self.h3._get_or_create_stream(stream_id) as stream:
                stream.frame_type = FrameType.WEBTRANSPORT_STREAM
                stream.session_id = self.session_id
        self._quic.send_stream_data(stream_id, frame(message), end_stream=True)
        self.transmit()
        return await self.frames(stream_id).next(f"reply to {message['type']}")


def check(condition, message):
    if not condition:
        fail(message)


def certificate_sha256(protocol):
    certificate = protocol._quic.tls._peer_certificate
    return base64.b64encode(hashlib.sha256(certificate.public_bytes(Encoding.DER)).digest()).decode()


async def session(host, port, flavour, expected_hash, stack):
    alpn = ["zajel/1"] if flavour == "quic" else H3_ALPN
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=alpn,
        verify_mode=ssl.CERT_NONE,
        max_datagram_frame_size=65536,
        server_name="localhost",
    )
    protocol = await stack.enter_async_context(
        connect(host, port, configuration=configuration, create_protocol=ZajelProtocol)
    )
    # The certificate is checked by its pinned hash, as browsers do with serverCertificateHashes.
    await asyncio.wait_for(protocol.handshake_done, STEP_TIMEOUT)
    check(certificate_sha256(protocol) == expected_hash, "the certificate does not match /cert-hash")
    if flavour == "webtransport":
        await protocol.open_webtransport(f"{host}:{port}")
    info = await protocol.server_info()
    check(info.get("type") == "server_info", f"{flavour}: first push {info}")
    return protocol


async def scenario(name, host, port, expected_hash, first_flavour, second_flavour):
    from contextlib import AsyncExitStack

    token = f"aioquic-{name}-{time.time_ns()}"
    async with AsyncExitStack() as stack:
        first = await session(host, port, first_flavour, expected_hash, stack)
        second = await session(host, port, second_flavour, expected_hash, stack)
        peers = (f"aioquic-{name}-1", f"aioquic-{name}-2")
        for protocol, peer in ((first, peers[0]), (second, peers[1])):
            reply = await protocol.request({"type": "register", "peerId": peer, "requestId": 1})
            check(reply.get("type") == "registered" and reply.get("requestId") == 1, f"{peer}: {reply}")
        reply = await first.request({"type": "register_rendezvous", "peerId": peers[0],
                                     "hourlyTokens": [token], "requestId": 2})
        check(reply == {"type": "rendezvous_result", "liveMatches": [], "deadDrops": [], "requestId": 2},
              f"{peers[0]}: {reply}")
        reply = await second.request({"type": "register_rendezvous", "peerId": peers[1],
                                      "hourlyTokens": [token], "relayId": "r2", "requestId": 3})
        check(reply.get("liveMatches") == [{"peerId": peers[0], "relayId": "", "meetingPoint": token}],
              f"{peers[1]}: {reply}")
        push = await first.next_push()
        check(push == {"type": "rendezvous_match",
                       "match": {"peerId": peers[1], "relayId": "r2", "meetingPoint": token}},
              f"{peers[0]} push: {push}")
        print(f"aioquic interop: {name}: {first_flavour} then {second_flavour} matched")


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", required=True)
    parser.add_argument("--quic", required=True, help="host:port of the UDP endpoint")
    args = parser.parse_args()
    with urllib.request.urlopen(args.http.rstrip("/") + "/cert-hash", timeout=STEP_TIMEOUT) as response:
        expected_hash = json.load(response)["value"]
    host, port = args.quic.rsplit(":", 1)
    await scenario("quic-first", host, int(port), expected_hash, "quic", "webtransport")
    await scenario("webtransport-first", host, int(port), expected_hash, "webtransport", "quic")
    print("aioquic interop: 2 passed, 0 failed")


asyncio.run(main())
