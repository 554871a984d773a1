// Worker restarts: the client reconnects by itself and resumes after the
// last message it handed on, so that rows committed while no worker ran
// arrive, none twice.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PgWsClient } from "../dist/index.js";
import { PLAIN, increasing, idBase, range, recorder, sql, terminateWorker, waitFor } from "./helpers.mjs";

const BASE = idBase("restart");

const insert = (from, to) => sql(PLAIN,
  `INSERT INTO client (id, first_seen, gender, age) SELECT g, now(), 'female', 30 FROM generate_series(${from}, ${to}) g`);

test("resumes across two worker restarts, rows committed while down included, none twice", async () => {
  const r = recorder();
  const c = new PgWsClient({
    url: PLAIN.url, events: "client_create", reconnect: { initialDelay: 100, maxDelay: 1000 }, ...r.hooks,
  });
  c.on("client_create", (data, msg) => r.msgs.push(msg));
  try {
    await waitFor("the first connection", () => r.opens === 1, r.detail);
    let id = BASE;
    for (let round = 1; round <= 2; round++) {
      await insert(id + 1, id + 5);
      await waitFor(`round ${round}: the rows committed while connected`,
        () => r.ids().includes(id + 5), r.detail);
      const closes = r.closes.length;
      await terminateWorker(PLAIN);
      // the worker is gone, and the next starts a second later: these
      // reach the client only if it resumes after what it had
      await waitFor(`round ${round}: the connection closed`, () => r.closes.length > closes, r.detail);
      assert.equal(r.closes.at(-1).code, 1001, "the worker's subscribers are closed with 1001");
      await insert(id + 6, id + 10);
      await waitFor(`round ${round}: reconnected`, () => r.opens === round + 1, r.detail);
      await insert(id + 11, id + 15);
      await waitFor(`round ${round}: the rows committed after`, () => r.ids().includes(id + 15), r.detail);
      id += 15;
    }
    assert.deepEqual(r.ids(), range(BASE + 1, BASE + 30), "every row once, in commit order");
    assert.ok(increasing(r.msgs), "positions increase");
    assert.deepEqual(c.position, { seq: r.msgs.at(-1).seq, epoch: r.msgs.at(-1).epoch });
    assert.deepEqual(r.errors, []);
  } finally {
    c.close();
  }
});

test("handlers and callbacks that throw: reported to onError, the others run, the client reconnects", async () => {
  const r = recorder();
  const c = new PgWsClient({
    url: PLAIN.url, events: "client_create", reconnect: { initialDelay: 100, maxDelay: 1000 }, ...r.hooks,
    onClose: (info) => {
      r.closes.push(info);
      throw new Error("onClose threw");
    },
  });
  c.on("client_create", () => {
    throw new Error("a handler threw");
  });
  c.on("client_create", (data, msg) => r.msgs.push(msg));
  const id = BASE + 100;
  try {
    await waitFor("the first connection", () => r.opens === 1, r.detail);
    await insert(id + 1, id + 2);
    await waitFor("the rows", () => r.ids().includes(id + 2), r.detail);
    await terminateWorker(PLAIN);
    await waitFor("the close", () => r.closes.length === 1, r.detail);
    await insert(id + 3, id + 4);
    await waitFor("the rows after the restart", () => r.ids().includes(id + 4), r.detail);
    assert.deepEqual(r.ids(), range(id + 1, id + 4));
    const said = r.errors.map((e) => e.message);
    assert.equal(said.filter((m) => m === "a handler threw").length, 4, String(said));
    // one per close: the worker's, and each attempt before the next listened
    assert.equal(said.filter((m) => m === "onClose threw").length, r.closes.length, String(said));
  } finally {
    c.close();
  }
});
