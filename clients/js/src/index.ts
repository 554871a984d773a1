/*
 * pg-ws-client: the official client of pg_ws (README.md beside this
 * file).  The client (client.ts), its transports (transport.ts) and the
 * types of the messages pg_ws sends (events.ts).
 */
export { PgWsClient } from "./client.js";
export type { ClientState, PgWsClientOptions, ResyncResult } from "./client.js";
export { sseTransport, webSocketTransport } from "./transport.js";
export type {
  CloseInfo,
  Connection,
  EventSourceConstructor,
  EventSourceLike,
  SseTransportOptions,
  Transport,
  TransportHandlers,
  WebSocketConstructor,
  WebSocketLike,
} from "./transport.js";
export type {
  ClientData,
  ClientVisitData,
  DocumentEventName,
  DocumentEvents,
  EmployeeAttendanceData,
  EmployeeAttendanceDeleteData,
  EmployeeData,
  IdData,
  Message,
  MessageOf,
  Position,
  ResyncInfo,
  RowEvents,
  Timestamp,
  VisitHistory,
} from "./events.js";
