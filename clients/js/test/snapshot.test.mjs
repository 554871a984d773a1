// A stream that started from a pg_ws_position() P reconnects with P and
// the last event's position (?since=P&after=SEQ&epoch=E): pg_ws then
// still skips what P's snapshot saw, where a plain ?since=SEQ would send
// it again (test/e2e/test_snapshot.py (f) checks the server's side).
// A fake transport records the URLs the client opens; no server needed.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PgWsClient } from "../dist/index.js";

function fakeTransport() {
  const t = {
    path: "ws/", canSend: true, urls: [], conns: [],
    open(url, h) {
      const c = { h, closed: false, send() {}, close() { c.closed = true; } };
      t.urls.push(url);
      t.conns.push(c);
      queueMicrotask(() => h.open());
      return c;
    },
  };
  return t;
}

const tick = () => new Promise((r) => setTimeout(r, 0));
const msg = (seq, event = "client_create") =>
  JSON.stringify({ event, data: { id: seq }, seq, epoch: "1-5-1" });

test("a reconnection after a snapshot start carries the snapshot and the last event", async () => {
  const t = fakeTransport();
  const c = new PgWsClient({ url: "ws://h/", since: "P+/x", transport: t,
    reconnect: { initialDelay: 1, maxDelay: 2 } });
  try {
    await tick();
    assert.equal(t.urls[0], "ws://h/ws/?since=P%2B%2Fx");
    t.conns[0].h.message(msg(5));
    t.conns[0].h.close({ code: 1001, reason: "", opened: true });
    while (t.urls.length < 2) await new Promise((r) => setTimeout(r, 5));
    assert.equal(t.urls[1], "ws://h/ws/?since=P%2B%2Fx&after=5&epoch=1-5-1");
    // a resync reloads the rows: the snapshot goes
    t.conns[1].h.message(JSON.stringify({ event: "resync_required", data: { since: 5 }, seq: 9, epoch: "1-5-1" }));
    t.conns[1].h.close({ code: 1001, reason: "", opened: true });
    while (t.urls.length < 3) await new Promise((r) => setTimeout(r, 5));
    assert.equal(t.urls[2], "ws://h/ws/?since=9&epoch=1-5-1");
  } finally {
    c.close();
  }
});

test("a start from an event's position reconnects from the last event alone", async () => {
  const t = fakeTransport();
  const c = new PgWsClient({ url: "ws://h/", since: { seq: 3, epoch: "1-5-1" }, transport: t,
    reconnect: { initialDelay: 1, maxDelay: 2 } });
  try {
    await tick();
    t.conns[0].h.message(msg(4));
    t.conns[0].h.close({ code: 1001, reason: "", opened: true });
    while (t.urls.length < 2) await new Promise((r) => setTimeout(r, 5));
    assert.equal(t.urls[1], "ws://h/ws/?since=4&epoch=1-5-1");
  } finally {
    c.close();
  }
});
