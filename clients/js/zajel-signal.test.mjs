// Unit tests of the browser client's CBOR codec and framing-independent parts: node --test clients/js/
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeCbor, encodeCbor } from "./zajel-signal.js";

test("values of the JSON data model round-trip", () => {
  const value = {
    type: "register_rendezvous",
    peerId: "peer-1",
    requestId: 4294967296,
    numbers: [0, 23, 24, 255, 256, 65535, 65536, -1, -24, -25, -300000, 0.5, -2.25, 1e300],
    flags: [true, false, null],
    text: "ünïcödé ✓ 😀",
    nested: { empty: {}, list: [] },
  };
  assert.deepEqual(decodeCbor(encodeCbor(value)), value);
});

test("encodings follow RFC 8949", () => {
  assert.deepEqual([...encodeCbor(0)], [0x00]);
  assert.deepEqual([...encodeCbor(24)], [0x18, 24]);
  assert.deepEqual([...encodeCbor(-1)], [0x20]);
  assert.deepEqual([...encodeCbor("a")], [0x61, 0x61]);
  assert.deepEqual([...encodeCbor({ a: [1] })], [0xa1, 0x61, 0x61, 0x81, 0x01]);
});

test("the decoder reads indefinite lengths, half floats and tags", () => {
  // {_ "k": [_ 1, 2], "t": (_ "ab", "c"), "h": 1.5 (half), "d": 1(5)}
  const bytes = Uint8Array.from([
    0xbf, 0x61, 0x6b, 0x9f, 0x01, 0x02, 0xff, 0x61, 0x74, 0x7f, 0x62, 0x61, 0x62, 0x61, 0x63, 0xff,
    0x61, 0x68, 0xf9, 0x3e, 0x00, 0x61, 0x64, 0xc1, 0x05, 0xff,
  ]);
  assert.deepEqual(decodeCbor(bytes), { k: [1, 2], t: "abc", h: 1.5, d: 5 });
});

test("trailing bytes are refused", () => {
  assert.throws(() => decodeCbor(Uint8Array.from([0xa0, 0x00])));
});

test("a __proto__ key is an ordinary key, as with JSON.parse", () => {
  // {"__proto__": {"x": 1}}
  const bytes = encodeCbor(JSON.parse('{"__proto__": {"x": 1}}'));
  const decoded = decodeCbor(bytes);
  assert.equal(Object.getPrototypeOf(decoded), Object.prototype);
  assert.deepEqual(Object.keys(decoded), ["__proto__"]);
  assert.equal(decoded.x, undefined);
});

test("malformed items are refused", () => {
  assert.throws(() => decodeCbor(Uint8Array.from([0x1f])), /length/); // indefinite integer
  assert.throws(() => decodeCbor(Uint8Array.from([0xa1, 0x61, 0x61, 0xff]))); // break as a value
  assert.throws(() => decodeCbor(Uint8Array.from([0x63, 0x61]))); // truncated text
});

test("the encoder follows JSON.stringify for dates and non-finite numbers", () => {
  const date = new Date(0);
  assert.deepEqual(decodeCbor(encodeCbor({ d: date, n: NaN, i: Infinity })),
    JSON.parse(JSON.stringify({ d: date, n: NaN, i: Infinity })));
});
