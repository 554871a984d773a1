// resync_required: a position pg_ws cannot honour (here one of another
// epoch) reaches onResync; the client then carries on with the live
// stream from the position the server gave, or, when onResync returns a
// pg_ws_position() taken with reloaded rows, subscribes from there.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PgWsClient } from "../dist/index.js";
import { PLAIN, idBase, increasing, range, recorder, sql, terminateWorker, waitFor } from "./helpers.mjs";

const BASE = idBase("resync");
// a position of another cluster's history
const FOREIGN = { seq: 1, epoch: "7000000000000000001-5-1" };

const insert = (from, to) => sql(PLAIN,
  `INSERT INTO employee (id, first_name, last_name) SELECT g, 'R', 'Esync' FROM generate_series(${from}, ${to}) g`);

const snapshotPosition = async () => (await sql(PLAIN,
  "BEGIN ISOLATION LEVEL REPEATABLE READ", "SELECT pg_ws_position()", "COMMIT"))[0];

test("onResync is told, and the stream goes on from the server's position, across a worker restart", async () => {
  const r = recorder();
  const c = new PgWsClient({
    url: PLAIN.url, since: FOREIGN, events: ["employee_create"], reconnect: { initialDelay: 100, maxDelay: 1000 },
    ...r.hooks,
    onResync: (info, msg) => { r.resyncs.push({ info, msg, position: c.position }); },
  });
  c.on("employee_create", (d, msg) => r.msgs.push(msg));
  const id = BASE;
  try {
    await waitFor("resync_required", () => r.resyncs.length === 1, r.detail);
    const { info, msg, position } = r.resyncs[0];
    assert.equal(info.since, 1);
    assert.equal(typeof info.oldest, "number");
    assert.notEqual(info.epoch, FOREIGN.epoch);
    assert.deepEqual(position, { seq: msg.seq, epoch: msg.epoch }, "the position is the resync's");
    await insert(id + 1, id + 3);
    await waitFor("the live stream after the resync", () => r.ids().includes(id + 3), r.detail);
    await terminateWorker(PLAIN);
    await waitFor("the close", () => r.closes.length === 1, r.detail);
    await insert(id + 4, id + 6);
    await waitFor("the reconnection", () => r.opens === 2, r.detail);
    await insert(id + 7, id + 9);
    await waitFor("the last rows", () => r.ids().includes(id + 9), r.detail);
    assert.deepEqual(r.ids(), range(id + 1, id + 9), "every row once");
    assert.equal(r.resyncs.length, 1, "resumed after the resync's position, not asked again");
    assert.ok(increasing(r.msgs));
    assert.deepEqual(r.errors, []);
  } finally {
    c.close();
  }
});

test("onResync returning a pg_ws_position(): what came meanwhile is dropped, the stream starts there", async () => {
  const r = recorder();
  const urls = [];
  const raw = [];
  // the WebSocket constructor option, with one that records what it sees
  class Spy extends WebSocket {
    constructor(url) {
      super(url);
      urls.push(url);
      this.addEventListener("message", (e) => raw.push(JSON.parse(e.data)));
    }
  }
  const id = BASE + 100;
  let reloaded = null;
  const c = new PgWsClient({
    url: PLAIN.url, since: FOREIGN, events: "employee_create", WebSocket: Spy, ...r.hooks,
    onResync: async () => {
      // the application reloads: a row committed before its snapshot, which
      // the old connection sends live meanwhile, is in the rows
      await insert(id + 1, id + 1);
      await waitFor("the row reaching the old connection", () => raw.some((m) => m.data.id === id + 1));
      reloaded = await snapshotPosition();
      await insert(id + 2, id + 2);     // after the snapshot: an event
      return reloaded;
    },
  });
  c.on("employee_create", (d, msg) => r.msgs.push(msg));
  try {
    await waitFor("the row after the snapshot", () => r.ids().includes(id + 2), r.detail);
    await insert(id + 3, id + 3);
    await waitFor("a live row", () => r.ids().includes(id + 3), r.detail);
    assert.deepEqual(r.ids(), [id + 2, id + 3], "none the reloaded rows hold");
    assert.equal(urls.length, 2);
    assert.match(urls[1], new RegExp("[?&]since=" + encodeURIComponent(reloaded) + "(&|$)"));
    assert.doesNotMatch(urls[1], /epoch=/);
    assert.deepEqual(r.errors, []);
  } finally {
    c.close();
  }
});

test("a pg_ws_position() as since: the events after it, also across a reconnection before the first", async () => {
  const r = recorder();
  const id = BASE + 200;
  await insert(id + 1, id + 1);
  const position = await snapshotPosition();
  await insert(id + 2, id + 2);
  const c = new PgWsClient({
    url: PLAIN.url, since: position, events: ["employee_create"], reconnect: { initialDelay: 100, maxDelay: 1000 },
    ...r.hooks,
  });
  c.on("employee_create", (d, msg) => r.msgs.push(msg));
  const later = await snapshotPosition();
  let dCloses = 0;
  const d = new PgWsClient({
    url: PLAIN.url, since: later, events: ["employee_create"], reconnect: { initialDelay: 100, maxDelay: 1000 },
    onClose: () => dCloses++,
  });
  const dIds = [];
  d.on("employee_create", (data) => dIds.push(data.id));
  try {
    await waitFor("the row committed after the position", () => r.ids().includes(id + 2), r.detail);
    // d has received nothing yet: its since is still the position text
    await waitFor("d's connection", () => d.state === "open");
    assert.equal(d.position, later);
    await terminateWorker(PLAIN);
    await waitFor("d's close", () => dCloses === 1);
    await insert(id + 3, id + 3);
    await waitFor("the last row", () => r.ids().includes(id + 3) && dIds.includes(id + 3),
      () => `d: ${dIds}; ${r.detail()}`);
    assert.deepEqual(r.ids(), [id + 2, id + 3]);
    assert.deepEqual(dIds, [id + 3], "d resumed at the position it was given");
  } finally {
    c.close();
    d.close();
  }
});
