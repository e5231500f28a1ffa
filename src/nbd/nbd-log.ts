// How the NBD server reports what happens to connections. `thinp serve` prints these;
// tests usually pass nothing.

export type NbdLogLevel = "debug" | "info" | "warn";
export type NbdLog = (level: NbdLogLevel, message: string) => void;

export const silentLog: NbdLog = () => {};
