// How the NBD server reports what happens to connections. `thinp serve` prints these;
// tests usually pass nothing.

export type NbdLogLevel = "debug" | "info" | "warn";
/** Facts a log shipper can filter on, beside the message that already says them. */
export type NbdLogFields = Readonly<Record<string, string | number>>;
export type NbdLog = (level: NbdLogLevel, message: string, fields?: NbdLogFields) => void;

export const silentLog: NbdLog = () => {};
