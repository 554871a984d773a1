// ?events= and ?filter=, and the handlers by name, by prefix and for all.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PgWsClient } from "../dist/index.js";
import { PLAIN, idBase, recorder, sql, waitFor } from "./helpers.mjs";

const BASE = idBase("select");

test("events and filter narrow the stream; handlers by name, prefix and *", async () => {
  const r = recorder();
  const c = new PgWsClient({
    url: PLAIN.url, events: ["client_visit_*"], filter: { device_id: "eq.cam-7" }, ...r.hooks,
  });
  const byName = [];
  const byPrefix = [];
  c.on("client_visit_create", (data) => byName.push(data.device_id));
  c.on("client_visit_*", (data, msg) => byPrefix.push(msg.event + ":" + data.device_id));
  c.on("*", (data, msg) => r.msgs.push(msg));
  // a filter as text, with a quoted comma and an & between terms
  const t = new PgWsClient({ url: PLAIN.url, filter: 'device_id=in.(cam-8,"cam,9")&client=gte.0' });
  const tGot = [];
  t.on("*", (data, msg) => tGot.push(msg.event + ":" + data.device_id));
  const id = BASE + 1;
  try {
    await waitFor("both connections", () => r.opens === 1 && t.state === "open", r.detail);
    await sql(PLAIN,
      `INSERT INTO client (id, first_seen) VALUES (${id}, now())`,
      `INSERT INTO visit_history (client_id, device_id) VALUES (${id}, 'cam-8'), (${id}, 'cam-7'), (${id}, 'cam,9')`,
      `INSERT INTO employee (id, first_name, last_name) VALUES (${id}, 'Not', 'Visit')`,
      `UPDATE visit_history SET datetime = datetime + interval '1 second' WHERE client_id = ${id}`,
      `DELETE FROM visit_history WHERE client_id = ${id} AND device_id = 'cam-7'`);
    await waitFor("cam-7's delete", () => byPrefix.includes("client_visit_delete:cam-7"), r.detail);
    await waitFor("the text filter's last", () => tGot.length === 4, () => String(tGot));
    assert.deepEqual(byName, ["cam-7"]);
    assert.deepEqual(byPrefix, ["client_visit_create:cam-7", "client_visit_update:cam-7", "client_visit_delete:cam-7"]);
    assert.deepEqual(r.msgs.map((m) => m.event + ":" + m.data.device_id), byPrefix);
    assert.deepEqual(tGot, ["client_visit_create:cam-8", "client_visit_create:cam,9",
      "client_visit_update:cam-8", "client_visit_update:cam,9"]);
    assert.deepEqual(r.errors, []);
  } finally {
    c.close();
    t.close();
  }
});
