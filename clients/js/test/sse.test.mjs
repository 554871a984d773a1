// transport: "sse": the client over GET /events and an EventSource (in
// Node the eventsource package's, a devDependency; browsers have their
// own).  The same events as over /ws/, byte for byte; a worker restart
// resumed without a gap or a double; tokens renewed by reconnecting at
// the position (an EventSource cannot send the auth message), one that
// expired replaced with a fresh one from getToken; resync_required
// reaching onResync; a pg_ws_position() start kept across a reconnection.
import assert from "node:assert/strict";
import { test } from "node:test";
import { EventSource } from "eventsource";
import { PgWsClient, sseTransport } from "../dist/index.js";
import { JWT, PLAIN, idBase, increasing, range, recorder, sql, terminateWorker, waitFor } from "./helpers.mjs";

const BASE = idBase("sse");
const FAST = { initialDelay: 100, maxDelay: 1000 };

/** An EventSource that records the URLs it opens and the raw data of
 * every event it dispatches, whatever its name. */
function spyEventSource() {
  const spy = { urls: [], data: [] };
  spy.Ctor = class extends EventSource {
    constructor(url, init) {
      super(url, init);
      spy.urls.push(url);
    }
    dispatchEvent(e) {
      if (e.type !== "open" && e.type !== "error") spy.data.push(e.data);
      return super.dispatchEvent(e);
    }
  };
  return spy;
}

const sse = (options) => new PgWsClient({ transport: "sse", EventSource, reconnect: FAST, ...options });

const clients = (from, to) => sql(PLAIN,
  `INSERT INTO client (id, first_seen, gender, age) SELECT g, now(), 'female', 30 FROM generate_series(${from}, ${to}) g`);
const employees = (server, from, to) => sql(server,
  `INSERT INTO employee (id, first_name, last_name) SELECT g, 'S', 'Se' FROM generate_series(${from}, ${to}) g`);

test("over SSE, the messages /ws/ sends: the eleven events, a custom one, by name, prefix and *", async () => {
  const w = recorder();
  const s = recorder();
  const ws = new PgWsClient({ url: PLAIN.url, reconnect: FAST, ...w.hooks });
  const spy = spyEventSource();
  const es = sse({ url: PLAIN.url, EventSource: spy.Ctor, ...s.hooks });
  ws.on("*", (d, msg) => w.msgs.push(msg));
  es.on("*", (d, msg) => s.msgs.push(msg));
  const prefixed = [];
  es.on("client_visit_*", (d, msg) => prefixed.push(msg.event));
  // a name no document event has: listened to once a handler names it,
  // even after the connection opened
  const custom = [];
  const c = BASE + 1;
  const e = BASE + 1;
  try {
    await waitFor("both connections", () => w.opens === 1 && s.opens === 1, s.detail);
    assert.match(spy.urls[0], /^http:\/\/[^/]+\/events$/, "GET /events");
    es.on("sse_test_custom", (d) => custom.push(d));
    await sql(PLAIN,
      `INSERT INTO client (id, first_seen, gender, age, image) VALUES (${c}, '2023-12-10 10:00:00.25+00', 'female', 31, 'client_images/a b.jpg')`,
      `INSERT INTO visit_history (client_id, datetime, device_id) VALUES (${c}, '2023-12-10 10:30:00+00', '1')`,
      `UPDATE visit_history SET device_id = '2' WHERE client_id = ${c}`,
      `INSERT INTO employee (id, first_name, last_name, email) VALUES (${e}, 'Zoë', 'Doe "Ω"', NULL)`,
      `UPDATE employee SET phone_number = '1234567890' WHERE id = ${e}`,
      `INSERT INTO attendance (employee_id, device_id, datetime, score) VALUES (${e}, '123ABC', '2023-12-10 08:00:00+00', 95.5)`,
      `UPDATE client SET visit_count = 1 WHERE id = ${c}`,
      `DELETE FROM attendance WHERE employee_id = ${e}`,
      `DELETE FROM employee WHERE id = ${e}`,
      `DELETE FROM visit_history WHERE client_id = ${c}`,
      `DELETE FROM client WHERE id = ${c}`,
      `SELECT pg_ws_send('sse_test_custom', '{"n": 1, "line": "a\\nb"}')`);
    await waitFor("the custom event over SSE", () => custom.length === 1, s.detail);
    await waitFor("the custom event over /ws/", () => w.msgs.length === 12, w.detail);
    assert.deepEqual(s.msgs.map((m) => m.event), [
      "client_create", "client_visit_create", "client_visit_update", "employee_create", "employee_update",
      "employee_attendance", "client_update", "employee_attendance_delete", "employee_delete",
      "client_visit_delete", "client_delete", "sse_test_custom"]);
    assert.deepEqual(s.msgs, w.msgs, "the same messages as over /ws/");
    // byte for byte: the data lines are /ws/'s JSON, which the client parsed
    assert.deepEqual(spy.data.map((d) => JSON.parse(d)), w.msgs);
    assert.deepEqual(custom, [{ n: 1, line: "a\nb" }]);
    assert.deepEqual(prefixed, ["client_visit_create", "client_visit_update", "client_visit_delete"]);
    assert.deepEqual(s.errors, []);
    assert.deepEqual(s.closes, []);
  } finally {
    ws.close();
    es.close();
  }
});

test("over SSE, a worker restart twice: rows committed while down arrive, none twice", async () => {
  const r = recorder();
  const spy = spyEventSource();
  const c = sse({ url: PLAIN.url, events: "client_create", EventSource: spy.Ctor, ...r.hooks });
  c.on("client_create", (data, msg) => r.msgs.push(msg));
  try {
    await waitFor("the first connection", () => r.opens === 1, r.detail);
    let id = BASE + 100;
    for (let round = 1; round <= 2; round++) {
      await clients(id + 1, id + 5);
      await waitFor(`round ${round}: the rows committed while connected`, () => r.ids().includes(id + 5), r.detail);
      const closes = r.closes.length;
      await terminateWorker(PLAIN);
      await waitFor(`round ${round}: the stream ended`, () => r.closes.length > closes, r.detail);
      assert.equal(r.closes.at(-1).opened, true);
      await clients(id + 6, id + 10);
      await waitFor(`round ${round}: reconnected`, () => r.opens === round + 1, r.detail);
      await clients(id + 11, id + 15);
      await waitFor(`round ${round}: the rows committed after`, () => r.ids().includes(id + 15), r.detail);
      id += 15;
    }
    assert.deepEqual(r.ids(), range(BASE + 101, BASE + 130), "every row once, in commit order");
    assert.ok(increasing(r.msgs));
    // each reconnection a new EventSource, resuming at the client's position
    const last = spy.urls.at(-1);
    assert.match(last, /\/events\?since=\d+&epoch=[^&]+&events=client_create$/);
    assert.deepEqual(r.errors, []);
  } finally {
    c.close();
  }
});

const mint = async (ttl) =>
  (await sql(JWT, `SELECT pg_ws_sign_token('{"sub": "js-sse-test"}', '${ttl}')`))[0];
const expOf = (token) => JSON.parse(Buffer.from(token.split(".")[1], "base64url")).exp * 1000;

test("over SSE, 3-second tokens renewed by reconnecting at the position before they expire", async () => {
  const r = recorder();
  const tokens = [];
  const spy = spyEventSource();
  const c = sse({
    url: JWT.url, events: "employee_create", EventSource: spy.Ctor, ...r.hooks,
    getToken: async () => {
      const t = await mint("3 seconds");
      tokens.push(t);
      return t;
    },
  });
  c.on("employee_create", (d, msg) => r.msgs.push(msg));
  let id = BASE + 200;
  try {
    await waitFor("the connection", () => r.opens === 1, r.detail);
    // rows keep coming while tokens are renewed: each renewal is a
    // reconnection, which must lose and double none of them
    const end = expOf(tokens[0]) + 3000;
    while (Date.now() < end || tokens.length < 3) {
      id++;
      await employees(JWT, id, id);
      await new Promise((res) => setTimeout(res, 100));
    }
    await waitFor("the last row", () => r.ids().includes(id), r.detail);
    assert.deepEqual(r.ids(), range(BASE + 201, id), "every row once");
    assert.ok(increasing(r.msgs));
    assert.deepEqual(r.closes, [], "the server never closed it: renewed before each token's end");
    assert.ok(r.opens >= 3, `a connection per token: ${r.opens}`);
    // each with a token of its own, minted by getToken, in the order
    // minted (one may be fetched and not used: a renewal that raced a
    // reconnection on a loaded machine)
    const used = spy.urls.map((u) => new URL(u).searchParams.get("token"));
    assert.equal(new Set(used).size, used.length, `a fresh token per connection: ${used.length}`);
    let k = 0;
    for (const t of used) {
      k = tokens.indexOf(t, k);
      assert.ok(k >= 0, "each URL's token was minted by getToken, in order");
      k++;
    }
    assert.deepEqual(r.errors, []);
  } finally {
    c.close();
  }
});

test("over SSE, a token that expired all the same: a fresh one from getToken, no gap", async () => {
  const r = recorder();
  let calls = 0;
  let open = false;
  let letIn;
  const reconnecting = new Promise((resolve) => (letIn = resolve));
  const c = sse({
    url: JWT.url, events: "employee_create", ...r.hooks,
    onOpen: () => { open = true; r.opens++; },
    onClose: (info) => { open = false; r.closes.push(info); },
    getToken: async () => {
      calls++;
      if (calls === 1) return mint("2 seconds");
      if (open && r.closes.length === 0) throw new Error("the token endpoint is down");
      await reconnecting;
      return mint("60 seconds");
    },
  });
  c.on("employee_create", (d, msg) => r.msgs.push(msg));
  const id = BASE + 1000;
  try {
    await waitFor("the connection", () => r.opens === 1, r.detail);
    await employees(JWT, id + 1, id + 3);
    await waitFor("the first rows", () => r.ids().includes(id + 3), r.detail);
    await waitFor("the server ending the expired stream", () => r.closes.length === 1, r.detail, 60000);
    assert.equal(r.closes[0].opened, true);
    await employees(JWT, id + 4, id + 6);     // while it is not connected
    letIn();
    await waitFor("the reconnection", () => r.opens === 2, r.detail);
    await employees(JWT, id + 7, id + 9);
    await waitFor("the last rows", () => r.ids().includes(id + 9), r.detail);
    assert.deepEqual(r.ids(), range(id + 1, id + 9), "every row once");
    assert.ok(increasing(r.msgs));
    assert.ok(r.errors.length >= 1 && r.errors.every((e) => /endpoint is down/.test(e.message)),
      "getToken's failures reach onError: " + r.errors.map(String));
  } finally {
    c.close();
  }
});

test("over SSE, a static token without getToken: the client stops once it expired and says why", async () => {
  const r = recorder();
  const c = sse({ url: JWT.url, token: await mint("2 seconds"), ...r.hooks });
  try {
    await waitFor("the connection", () => r.opens === 1, r.detail);
    await waitFor("the client stopping", () => c.state === "closed", r.detail, 60000);
    assert.equal(r.closes.length, 1, "no attempt with the expired token");
    assert.match(String(r.errors[0]), /no getToken/);
  } finally {
    c.close();
  }
});

const snapshotPosition = async () => (await sql(PLAIN,
  "BEGIN ISOLATION LEVEL REPEATABLE READ", "SELECT pg_ws_position()", "COMMIT"))[0];

test("over SSE, resync_required reaches onResync, and the stream goes on live", async () => {
  const r = recorder();
  const FOREIGN = { seq: 1, epoch: "7000000000000000001-5-1" };
  const c = sse({
    url: PLAIN.url, since: FOREIGN, events: ["employee_create"], ...r.hooks,
    onResync: (info, msg) => { r.resyncs.push({ info, msg }); },
  });
  c.on("employee_create", (d, msg) => r.msgs.push(msg));
  const id = BASE + 300;
  try {
    await waitFor("resync_required", () => r.resyncs.length === 1, r.detail);
    const { info, msg } = r.resyncs[0];
    assert.equal(msg.event, "resync_required");
    assert.equal(info.since, 1);
    assert.notEqual(info.epoch, FOREIGN.epoch);
    await employees(PLAIN, id + 1, id + 3);
    await waitFor("the live stream after the resync", () => r.ids().includes(id + 3), r.detail);
    assert.deepEqual(r.ids(), range(id + 1, id + 3));
    assert.equal(r.resyncs.length, 1);
    assert.deepEqual(r.errors, []);
  } finally {
    c.close();
  }
});

test("over SSE, a pg_ws_position() start, kept across a reconnection (since=P&after=SEQ)", async () => {
  const r = recorder();
  const id = BASE + 400;
  const spy = spyEventSource();
  // a transport made by hand, with a name to listen to
  const c = new PgWsClient({
    url: PLAIN.url, since: await snapshotPosition(), events: ["client_create"], reconnect: FAST, ...r.hooks,
    transport: sseTransport({ EventSource: spy.Ctor }),
  });
  c.on("client_create", (d, msg) => r.msgs.push(msg));
  try {
    await clients(id + 1, id + 2);
    await waitFor("the rows after the position", () => r.ids().includes(id + 2), r.detail);
    await terminateWorker(PLAIN);
    await waitFor("the close", () => r.closes.length === 1, r.detail);
    await clients(id + 3, id + 3);
    await waitFor("the row after the restart", () => r.ids().includes(id + 3), r.detail);
    assert.deepEqual(r.ids(), range(id + 1, id + 3));
    assert.match(spy.urls.at(-1), /\?since=[^&]+&after=\d+&epoch=/, "the snapshot position kept");
    assert.deepEqual(r.errors, []);
  } finally {
    c.close();
  }
});
