// zajel-signal browser client: WebTransport (CBOR frames) with a WebSocket fallback (JSON).
// Dependency-free ES module. See README.md ("Browser client") for an example.
//
//   const client = await connect({
//     webTransportUrl: "https://127.0.0.1:4433/",
//     webSocketUrl: "ws://127.0.0.1:8080/",
//     certificateHash: (await fetchCertificateHash("http://127.0.0.1:8080")).values, // self-made certs
//     onPush: (message) => console.log("push", message),
//   });
//   const reply = await client.request({ type: "ping" });

/**
 * Fetches `GET /cert-hash` from the server's HTTP port: `{algorithm: "sha-256", value: <base64>,
 * values: [<base64>...]}`. `values` lists the current certificate's hash and, in the day before a
 * development certificate is replaced, its successor's: pass `values` as `certificateHash` so that the
 * session keeps WebTransport across the replacement.
 */
export async function fetchCertificateHash(httpBase) {
  const response = await fetch(new URL("/cert-hash", httpBase));
  if (!response.ok) throw new Error(`GET /cert-hash: ${response.status}`);
  return response.json();
}

/**
 * Opens a session: WebTransport first when the browser has it, WebSocket when it does not or when
 * WebTransport fails. `transports` may restrict the order, e.g. ["websocket"]. The client sends a
 * `ping` every `keepAliveMs` so that the server does not close it as idle, and calls `onClose` once
 * when the session ends.
 */
export async function connect({
  webTransportUrl,
  webSocketUrl,
  certificateHash,
  onPush = () => {},
  onClose = () => {},
  transports = ["webtransport", "websocket"],
  timeoutMs = 10000,
  requestTimeoutMs = 15000,
  keepAliveMs = 30000,
}) {
  const failures = [];
  for (const transport of transports) {
    // Whatever an attempt opened is closed again if the attempt fails or times out.
    const attempt = { close: () => {} };
    try {
      let open;
      if (transport === "webtransport") {
        if (!webTransportUrl) throw new Error("no webTransportUrl");
        if (typeof globalThis.WebTransport !== "function") throw new Error("WebTransport is not available");
        open = WebTransportClient.open(webTransportUrl, certificateHash, attempt);
      } else if (transport === "websocket") {
        if (!webSocketUrl) throw new Error("no webSocketUrl");
        open = WebSocketClient.open(webSocketUrl, attempt);
      } else {
        throw new Error(`unknown transport ${transport}`);
      }
      const client = await withTimeout(open, timeoutMs, transport);
      client.start({ onPush, onClose, requestTimeoutMs, keepAliveMs });
      return client;
    } catch (error) {
      attempt.close();
      failures.push(`${transport}: ${error.message ?? error}`);
    }
  }
  throw new Error(`could not connect (${failures.join("; ")})`);
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} timed out`)), ms); }),
  ]);
}

function expectServerInfo(message) {
  if (message?.type !== "server_info") {
    throw new Error(`refused: ${message?.code ?? message?.type} ${message?.message ?? ""}`.trim());
  }
  return message;
}

let nextRequestId = 1;

/**
 * Requests the server answers with nothing on WebSocket when they succeed (and with `ack` on
 * WebTransport). Over WebSocket, `request()` resolves these at once with a local `ack`; an error the
 * server sends for one later reaches `onPush`.
 */
const SILENT_ON_WEBSOCKET = new Set([
  "pair_request", "link_request", "offer", "answer", "ice_candidate",
  "call_offer", "call_answer", "call_reject", "call_hangup", "call_ice",
]);

function silentOnWebSocket(message) {
  return SILENT_ON_WEBSOCKET.has(message.type)
    || ((message.type === "pair_response" || message.type === "link_response") && message.accepted === false);
}

/** What both transports share: request timeouts, keep-alive pings, push delivery, one close. */
class Session {
  start({ onPush, onClose, requestTimeoutMs, keepAliveMs }) {
    this.onPush = onPush;
    this.onCloseCallback = onClose;
    this.requestTimeoutMs = requestTimeoutMs;
    this.keepAlive = setInterval(() => this.request({ type: "ping" }).catch(() => {}), keepAliveMs);
    for (const message of this.early ?? []) this.deliver(message);
    this.early = undefined;
  }

  deliver(message) {
    if (!this.onPush) {
      (this.early ??= []).push(message);
      return;
    }
    try {
      this.onPush(message);
    } catch (error) {
      console.error("zajel-signal: onPush threw", error);
    }
  }

  ended(reason) {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepAlive);
    this.onCloseCallback?.(reason);
  }

  /** Resolves with the reply to `message` (a `requestId` is added), or rejects after the timeout. */
  request(message) {
    if (this.closed) return Promise.reject(new Error("the session is closed"));
    const requestId = nextRequestId++;
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => {
        this.forget?.(requestId);
        reject(new Error(`no reply to ${message.type} in ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
    });
    return Promise.race([this.exchange({ ...message, requestId }, requestId), timeout])
      .finally(() => clearTimeout(timer));
  }
}

class WebTransportClient extends Session {
  static async open(url, certificateHash, attempt) {
    // One base64 hash, or a list of them.
    const hashes = certificateHash ? [].concat(certificateHash) : [];
    const options = hashes.length
      ? {
          serverCertificateHashes: hashes.map((hash) => ({
            algorithm: "sha-256",
            value: base64ToBytes(hash),
          })),
        }
      : {};
    const transport = new WebTransport(url, options);
    attempt.close = () => transport.close();
    await transport.ready;
    const streams = transport.incomingUnidirectionalStreams.getReader();
    const { value: pushStream, done } = await streams.read();
    streams.releaseLock();
    if (done) throw new Error("no push stream");
    const frames = frameReader(pushStream);
    const first = await frames.next();
    if (first.done) throw new Error("the push stream ended before server_info");
    const client = new WebTransportClient(transport, expectServerInfo(decodeCbor(first.value)));
    (async () => {
      for await (const frame of frames) {
        let message;
        try {
          message = decodeCbor(frame);
        } catch (error) {
          console.error("zajel-signal: undecodable push", error);
          continue;
        }
        client.deliver(message);
      }
    })().catch(() => {}).finally(() => client.ended("push stream ended"));
    transport.closed.then(() => client.ended("closed"), (error) => client.ended(String(error)));
    return client;
  }

  constructor(connection, serverInfo) {
    super();
    this.transport = "webtransport";
    this.connection = connection;
    this.serverInfo = serverInfo;
    // Every request goes on one stream, so that the server handles them in the order sent (an offer
    // before its ICE candidates), as on WebSocket; answers come back in the same order.
    this.waiting = [];
    this.stream = connection.createBidirectionalStream().then((stream) => {
      const writer = stream.writable.getWriter();
      (async () => {
        for await (const answer of frameReader(stream.readable)) {
          const next = this.waiting.shift();
          try {
            next?.done(decodeCbor(answer));
          } catch (error) {
            next?.fail(error);
          }
        }
      })().catch(() => {}).finally(() => {
        for (const { fail } of this.waiting.splice(0)) fail(new Error("the request stream ended"));
      });
      return writer;
    });
  }

  /** Writes one request on the session's request stream; resolves with its answer. */
  async exchange(message) {
    const writer = await this.stream;
    const answer = new Promise((done, fail) => this.waiting.push({ done, fail }));
    await writer.write(frame(encodeCbor(message)));
    return answer;
  }

  close() {
    this.connection.close();
    this.ended("closed by the client");
  }
}

class WebSocketClient extends Session {
  static open(url, attempt) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      attempt.close = () => socket.close();
      socket.binaryType = "arraybuffer";
      const client = new WebSocketClient(socket);
      socket.onerror = () => reject(new Error("WebSocket failed"));
      socket.onclose = (event) => {
        reject(new Error(`WebSocket closed (${event.code})`));
        for (const { fail } of client.pending.values()) fail(new Error(`closed (${event.code})`));
        client.pending.clear();
        client.ended(`closed (${event.code})`);
      };
      socket.onmessage = (event) => {
        let message;
        try {
          message = typeof event.data === "string"
            ? JSON.parse(event.data)
            : decodeCbor(new Uint8Array(event.data));
        } catch (error) {
          console.error("zajel-signal: undecodable message", error);
          return;
        }
        if (!client.serverInfo) {
          try {
            client.serverInfo = expectServerInfo(message);
            resolve(client);
          } catch (error) {
            reject(error);
          }
          return;
        }
        const waiting = message.requestId !== undefined && client.pending.get(message.requestId);
        if (waiting) {
          client.pending.delete(message.requestId);
          waiting.done(message);
        } else {
          client.deliver(message);
        }
      };
    });
  }

  constructor(socket) {
    super();
    this.transport = "websocket";
    this.socket = socket;
    this.pending = new Map();
  }

  /** Sends one request as JSON; resolves with the reply carrying its requestId. */
  exchange(message, requestId) {
    if (this.socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error("the WebSocket is not open"));
    }
    if (silentOnWebSocket(message)) {
      this.socket.send(JSON.stringify(message));
      return Promise.resolve({ type: "ack", for: message.type, requestId });
    }
    return new Promise((done, fail) => {
      this.pending.set(requestId, { done, fail });
      this.socket.send(JSON.stringify(message));
    });
  }

  forget(requestId) {
    this.pending.delete(requestId);
  }

  close() {
    this.socket.close();
  }
}

// Framing: a 4-byte big-endian length, then one CBOR map.

function frame(payload) {
  const bytes = new Uint8Array(4 + payload.length);
  new DataView(bytes.buffer).setUint32(0, payload.length);
  bytes.set(payload, 4);
  return bytes;
}

async function* frameReader(readable) {
  const reader = readable.getReader();
  let buffer = new Uint8Array(0);
  try {
    for (;;) {
      while (buffer.length >= 4) {
        const length = new DataView(buffer.buffer, buffer.byteOffset).getUint32(0);
        if (buffer.length < 4 + length) break;
        yield buffer.slice(4, 4 + length);
        buffer = buffer.slice(4 + length);
      }
      const { value, done } = await reader.read();
      if (done) return;
      const joined = new Uint8Array(buffer.length + value.length);
      joined.set(buffer);
      joined.set(value, buffer.length);
      buffer = joined;
    }
  } finally {
    reader.releaseLock();
  }
}

function base64ToBytes(base64) {
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

// A minimal CBOR codec (RFC 8949) for the JSON data model: maps with text keys, arrays, text, numbers,
// booleans and null. Exported for tests and tools.

export function encodeCbor(value) {
  const out = [];
  const head = (major, n) => {
    if (n < 24) out.push((major << 5) | n);
    else if (n < 0x100) out.push((major << 5) | 24, n);
    else if (n < 0x10000) out.push((major << 5) | 25, n >> 8, n & 0xff);
    else if (n < 0x100000000) out.push((major << 5) | 26, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
    else {
      const high = Math.floor(n / 0x100000000), low = n >>> 0;
      out.push((major << 5) | 27, high >>> 24, (high >> 16) & 0xff, (high >> 8) & 0xff, high & 0xff,
        low >>> 24, (low >> 16) & 0xff, (low >> 8) & 0xff, low & 0xff);
    }
  };
  const text = new TextEncoder();
  const write = (v) => {
    // The same values as JSON.stringify: toJSON() is honoured, non-finite numbers become null.
    if (v !== null && typeof v === "object" && typeof v.toJSON === "function") v = v.toJSON();
    if (v === null || v === undefined || (typeof v === "number" && !Number.isFinite(v))) out.push(0xf6);
    else if (v === false) out.push(0xf4);
    else if (v === true) out.push(0xf5);
    else if (typeof v === "number") {
      if (Number.isSafeInteger(v)) v >= 0 ? head(0, v) : head(1, -1 - v);
      else {
        const bytes = new Uint8Array(8);
        new DataView(bytes.buffer).setFloat64(0, v);
        out.push(0xfb, ...bytes);
      }
    } else if (typeof v === "string") {
      const bytes = text.encode(v);
      head(3, bytes.length);
      for (const b of bytes) out.push(b);
    } else if (Array.isArray(v)) {
      head(4, v.length);
      v.forEach(write);
    } else if (typeof v === "object") {
      const entries = Object.entries(v).filter(([, item]) => item !== undefined);
      head(5, entries.length);
      for (const [key, item] of entries) { write(key); write(item); }
    } else throw new TypeError(`cannot encode ${typeof v}`);
  };
  write(value);
  return Uint8Array.from(out);
}

export function decodeCbor(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = new TextDecoder("utf-8", { fatal: true });
  let at = 0;
  const length = (info, indefiniteAllowed) => {
    if (info < 24) return info;
    if (info === 24) return view.getUint8(at++);
    if (info === 25) { const n = view.getUint16(at); at += 2; return n; }
    if (info === 26) { const n = view.getUint32(at); at += 4; return n; }
    if (info === 27) { const n = Number(view.getBigUint64(at)); at += 8; return n; }
    if (info === 31 && indefiniteAllowed) return -1;
    throw new Error("invalid CBOR length");
  };
  // `inIndefinite`: a break may end the container being read.
  const read = (inIndefinite = false) => {
    const initial = view.getUint8(at++);
    const major = initial >> 5, info = initial & 31;
    if (major === 7) {
      if (info === 20) return false;
      if (info === 21) return true;
      if (info === 22 || info === 23) return null;
      if (info === 25) { const half = view.getUint16(at); at += 2; return decodeHalf(half); }
      if (info === 26) { const n = view.getFloat32(at); at += 4; return n; }
      if (info === 27) { const n = view.getFloat64(at); at += 8; return n; }
      if (info === 31 && inIndefinite) return BREAK;
      throw new Error("unsupported CBOR simple value");
    }
    const n = length(info, major >= 2 && major <= 5);
    switch (major) {
      case 0: return n;
      case 1: return -1 - n;
      case 2: case 3: {
        if (n < 0) {
          const parts = [];
          for (let part = read(true); part !== BREAK; part = read(true)) parts.push(part);
          return major === 3 ? parts.join("") : concatBytes(parts);
        }
        const slice = bytes.subarray(at, at + n); at += n;
        if (slice.length < n) throw new Error("truncated CBOR");
        return major === 3 ? text.decode(slice) : slice.slice();
      }
      case 4: {
        const items = [];
        if (n < 0) for (let item = read(true); item !== BREAK; item = read(true)) items.push(item);
        else for (let i = 0; i < n; i++) items.push(read());
        return items;
      }
      case 5: {
        const map = {};
        // defineProperty, as JSON.parse does, so that a "__proto__" key is an ordinary key.
        const put = (key, value) =>
          Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
        if (n < 0) for (let key = read(true); key !== BREAK; key = read(true)) put(key, read());
        else for (let i = 0; i < n; i++) { const key = read(); put(key, read()); }
        return map;
      }
      case 6: return read(); // a tag: keep its content
    }
    throw new Error("invalid CBOR");
  };
  const value = read();
  if (at !== bytes.length) throw new Error("trailing bytes after CBOR");
  return value;
}

const BREAK = Symbol("break");

function decodeHalf(half) {
  const exponent = (half >> 10) & 0x1f, fraction = half & 0x3ff, sign = half & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

function concatBytes(parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) { out.set(part, at); at += part.length; }
  return out;
}
