/*
 * The messages pg_ws sends, as types: the event document's eleven events
 * and their payloads (README.md, "Events": values that a column may hold
 * as NULL are typed `| null`), resync_required, and helpers for an
 * application's own events (pg_ws_send()) and a watched table's row
 * events (pg_ws_watch(..., 'row')).  Types only: nothing here runs.
 */

/** A timestamp as pg_ws writes it: UTC, `2023-12-10T10:00:00Z` (six
 * fraction digits when the microseconds are not zero), or `infinity` /
 * `-infinity`. */
export type Timestamp = string;

/** One of a client's visits, inside client_create and client_update. */
export interface VisitHistory {
  datetime: Timestamp;
  device_id: string;
}

/** client_create, client_update. */
export interface ClientData {
  id: number;
  first_seen: Timestamp | null;
  last_seen: Timestamp | null;
  visit_count: number;
  gender: string | null;
  age: number | null;
  /** an absolute URL (pg_ws.media_url + the stored path), or null */
  image: string | null;
  /** the newest pg_ws.max_visit_histories visits, oldest first */
  visit_histories: VisitHistory[];
}

/** client_visit_create, client_visit_update, client_visit_delete. */
export interface ClientVisitData {
  datetime: Timestamp;
  device_id: string;
  /** the client's id */
  client: number;
}

/** employee_create, employee_update. */
export interface EmployeeData {
  id: number;
  first_name: string;
  last_name: string;
  email: string | null;
  phone_number: string | null;
  image: string | null;
  working_graphic: number | null;
}

/** employee_attendance. */
export interface EmployeeAttendanceData {
  employee_id: number;
  device_id: string;
  image: string | null;
  datetime: Timestamp;
  /** null for NaN and infinities, which JSON cannot carry */
  score: number | null;
}

/** employee_attendance_delete. */
export interface EmployeeAttendanceDeleteData {
  employee_id: number;
  datetime: Timestamp;
}

/** client_delete, employee_delete. */
export interface IdData {
  id: number;
}

/** The event document's eleven events, by name. */
export interface DocumentEvents {
  client_create: ClientData;
  client_update: ClientData;
  client_delete: IdData;
  client_visit_create: ClientVisitData;
  client_visit_update: ClientVisitData;
  client_visit_delete: ClientVisitData;
  employee_create: EmployeeData;
  employee_update: EmployeeData;
  employee_delete: IdData;
  employee_attendance: EmployeeAttendanceData;
  employee_attendance_delete: EmployeeAttendanceDeleteData;
}

/** The names of the event document's events. */
export type DocumentEventName = keyof DocumentEvents;

/**
 * The events of a table watched with kind 'row': `<prefix>_create` and
 * `_update` carry the row (its listed columns), `_delete` its primary key.
 *
 *     type Orders = RowEvents<"orders", {id: number; status: string}>;
 *     new PgWsClient<Orders>({...}).on("orders_update", (row) => row.status);
 */
export type RowEvents<Prefix extends string, Row, Key = { id: number }> = {
  [K in `${Prefix}_create` | `${Prefix}_update`]: Row;
} & {
  [K in `${Prefix}_delete`]: Key;
};

/** A message of event E with payload D, and its position. */
export interface Message<E extends string = string, D = unknown> {
  event: E;
  data: D;
  /** the event's position: resuming after it skips nothing */
  seq: number;
  /** the history seq belongs to */
  epoch: string;
}

/** The union of the messages of an event map, discriminated by `event`. */
export type MessageOf<Events> = {
  [K in keyof Events & string]: Message<K, Events[K]>;
}[keyof Events & string];

/** The data of resync_required (README.md, "Positions and resuming"). */
export interface ResyncInfo {
  /** the position the client asked to resume after */
  since: number;
  /** the oldest position one can still resume after */
  oldest: number;
  /** this node's epoch */
  epoch: string;
  /** after a failover: the first position where the client's history and
   * this node's differ */
  fork?: number;
}

/** Where a stream is: a message's `seq` and `epoch`. */
export interface Position {
  seq: number;
  epoch: string;
}
