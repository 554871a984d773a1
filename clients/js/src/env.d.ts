// What the client uses of its host, which browsers and Node (20.10+)
// both have; declared here so that the package is compiled without the
// DOM's or Node's types, and its .d.ts needs neither.
declare function atob(data: string): string;
declare function setTimeout(handler: () => void, ms: number): unknown;
declare function clearTimeout(id: unknown): void;
