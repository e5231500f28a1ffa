// systemd's readiness protocol (sd_notify(3)) for `thinp serve` in a Type=notify unit: one
// datagram of newline-separated KEY=VALUE assignments to the socket NOTIFY_SOCKET names.
// Without NOTIFY_SOCKET every call does nothing, so serve calls it unconditionally.

import { sendUnixDatagram } from "../src/io/unix-datagram.js";

/** systemd reads a notification into a buffer of this many bytes; a STATUS= line is cut to fit. */
const NOTIFY_MESSAGE_BYTES_MAX = 4096;
const STATUS_BYTES_MAX = 1024;

export class ServiceNotifier {
  private constructor(
    private readonly socketAddress: string | null,
    private readonly log: (message: string) => void,
  ) {}

  static fromEnvironment(env: NodeJS.ProcessEnv, log: (message: string) => void): ServiceNotifier {
    const address = env.NOTIFY_SOCKET;
    // systemd accepts a path or an abstract name ('@'); anything else (a vsock address) is not for us.
    const usable = address !== undefined && (address.startsWith("/") || address.startsWith("@")) && address.length > 1;
    if (address !== undefined && !usable) log(`warning: NOTIFY_SOCKET=${address} is neither a path nor an abstract socket; not notifying`);
    return new ServiceNotifier(usable ? address : null, log);
  }

  get enabled(): boolean {
    return this.socketAddress !== null;
  }

  /** What `systemctl status` shows. */
  status(text: string): void {
    this.send([statusLine(text)]);
  }

  /** The NBD listeners and the control socket are up: systemd starts the units ordered after this one. */
  ready(statusText: string): void {
    this.send(["READY=1", statusLine(statusText)]);
  }

  stopping(statusText: string): void {
    this.send(["STOPPING=1", statusLine(statusText)]);
  }

  private send(assignments: string[]): void {
    if (this.socketAddress === null) return;
    const message = Buffer.from(assignments.join("\n") + "\n", "utf8");
    if (message.length > NOTIFY_MESSAGE_BYTES_MAX) throw new RangeError(`notification of ${message.length} bytes`);
    const failure = sendUnixDatagram(this.socketAddress, message);
    // Losing a notification delays systemd's view, it does not harm the pool: a warning, not a stop.
    if (failure !== null) this.log(`warning: cannot notify the service manager at ${this.socketAddress}: ${failure}`);
  }
}

/** STATUS= takes one line; newlines would start other assignments. */
function statusLine(text: string): string {
  const line = text.replace(/\s*\n\s*/g, "; ");
  const bytes = Buffer.from(line, "utf8");
  return `STATUS=${bytes.length <= STATUS_BYTES_MAX ? line : bytes.subarray(0, STATUS_BYTES_MAX).toString("utf8")}`;
}
