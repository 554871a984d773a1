// Type tests (tsc --noEmit -p test/tsconfig.json; nothing runs): the
// typed API, and what must not compile (each @ts-expect-error fails the
// check if its line compiles).
import { PgWsClient, sseTransport, type Message, type RowEvents } from "../src/index.js";

const c = new PgWsClient({ url: "ws://127.0.0.1:8765" });
c.on("client_create", (data, msg) => {
  const id: number = data.id;
  const visits: { datetime: string; device_id: string }[] = data.visit_histories;
  const seq: number = msg.seq;
  const name: "client_create" = msg.event;
  // @ts-expect-error: age may be null
  const age: number = data.age;
  // @ts-expect-error: no such field
  data.nope;
  return [id, visits, seq, name, age];
});
c.on("employee_attendance", (d) => d.score?.toFixed(1) + d.device_id);
c.on("client_visit_delete", (d) => d.client + 1);
c.on("employee_attendance_delete", (d) => {
  // @ts-expect-error: a delete carries no image
  d.image;
});
// any other name: data unknown until the application says
c.on("order_paid", (data) => {
  // @ts-expect-error: unknown
  data.amount;
});
c.on("*", (_data, msg) => {
  // the union narrows on the event's name
  if (msg.event === "employee_create") return msg.data.first_name;
  if (msg.event === "client_delete") return msg.data.id;
  return msg.event;
});

// custom and row events, declared
type Orders = RowEvents<"orders", { id: number; status: string }>;
type Custom = Orders & { shift_changed: { employee: number; graphic: number } };
const t = new PgWsClient<Custom>({
  url: "wss://ws.example.com:8765",
  events: ["orders_*", "shift_changed"],
  filter: { status: "eq.paid" },
  since: { seq: 1, epoch: "1-2-1" },
  getToken: async () => "a.b.c",
  onResync: async (info) => (info.fork ?? info.oldest) ? "position-text" : undefined,
});
t.on("orders_update", (row) => row.status.toUpperCase());
t.on("orders_delete", (key) => {
  const id: number = key.id;
  // @ts-expect-error: a delete is the key only
  key.status;
  return id;
});
t.on("shift_changed", (d) => d.graphic);
const m: Message<"shift_changed", { employee: number; graphic: number }> | null = null;
void m;

// options are checked
// @ts-expect-error: since is a position text or {seq, epoch}
new PgWsClient({ url: "ws://x", since: 5 });
// @ts-expect-error: getToken returns a token
new PgWsClient({ url: "ws://x", getToken: () => 5 });

// transports: by name, or made by hand
new PgWsClient({ url: "ws://x", transport: "sse" });
new PgWsClient({ url: "ws://x", transport: "websocket" });
new PgWsClient({ url: "ws://x", transport: sseTransport({ events: ["shift_changed"], withCredentials: true }) });
// @ts-expect-error: no such transport
new PgWsClient({ url: "ws://x", transport: "longpoll" });
// @ts-expect-error: an EventSource constructor, not an instance
new PgWsClient({ url: "ws://x", transport: "sse", EventSource: {} });
