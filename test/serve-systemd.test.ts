// `thinp serve` under systemd, without systemd: a launcher binds the listening socket and
// execs thinp with it on descriptor 3 and LISTEN_FDS/LISTEN_PID set, as the service manager
// does for a .socket unit; a receiver bound where NOTIFY_SOCKET points collects what a
// Type=notify unit would tell systemd. nbdinfo and nbdcopy are the clients.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { LISTEN_FDS_MAX, takeActivatedSockets } from "../cli/socket-activation.js";
import { encodeUnixAddress, UNIX_PATH_BYTES_MAX } from "../src/io/unix-datagram.js";
import { listedExports, runToolOk } from "./support/cli-real-clients.js";
import { assertCliBuilt, CLI_PATH, makeTempDir, removeTempDir, runCliOk, runProgram, seededBytes } from "./support/cli-run.js";
import { eventually, killAllServers, startServe, withTimeout } from "./support/cli-serve-process.js";

const MiB = 1024 * 1024;
const VOLUME_BYTES = 4 * MiB;
/** Bounds the receiver's life and each wait for a notification; nothing here is slow. */
const NOTIFY_TIMEOUT_MS = 15_000;
const LAUNCH_TIMEOUT_MS = 20_000;

/**
 * What systemd does before it starts a socket-activated service: bind and listen (TCP on
 * 127.0.0.1 with a free port, or a Unix socket path), put the socket on descriptor 3, and
 * exec the service with LISTEN_FDS=1 and LISTEN_PID set to its own pid, which exec keeps.
 * argv: tcp|unix|none, the Unix path (or '-'), LISTEN_PID ('self' or a number), then the command.
 */
const ACTIVATION_LAUNCHER = `
import os, socket, sys
kind, unix_path, listen_pid = sys.argv[1:4]
if kind != "none":
    if kind == "tcp":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
    else:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(unix_path)
    listener.listen(16)
    if listener.fileno() != 3:
        os.dup2(listener.fileno(), 3)
    os.set_inheritable(3, True)
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_FDNAMES"] = "nbd"
    os.environ["LISTEN_PID"] = str(os.getpid()) if listen_pid == "self" else listen_pid
os.execv(sys.argv[4], sys.argv[4:])
`;

/** Prints each datagram on NOTIFY_SOCKET as a JSON line; exits after STOPPING=1 or when its time is up. */
const NOTIFY_RECEIVER = `
import json, socket, sys
address, timeout_s = sys.argv[1], float(sys.argv[2])
receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
receiver.bind("\\0" + address[1:] if address.startswith("@") else address)
receiver.settimeout(timeout_s)
print("bound", flush=True)
while True:
    message = receiver.recv(4096).decode()
    print(json.dumps(message), flush=True)
    if "STOPPING=1" in message.split("\\n"):
        break
`;

function launcher(kind: "tcp" | "unix" | "none", unixPath = "-", listenPid = "self"): string[] {
  return ["python3", "-c", ACTIVATION_LAUNCHER, kind, unixPath, listenPid];
}

/** The receiver of one test: the notifications so far, each a list of assignments. */
class NotifyReceiver {
  readonly messages: string[][] = [];
  private constructor(private readonly child: ChildProcess) {}

  static async bind(address: string): Promise<NotifyReceiver> {
    const child = spawn("python3", ["-c", NOTIFY_RECEIVER, address, String(NOTIFY_TIMEOUT_MS / 1000)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const receiver = new NotifyReceiver(child);
    receivers.add(receiver);
    let pending = "";
    let bound!: () => void;
    const isBound = new Promise<void>((resolve) => (bound = resolve));
    child.stdout!.setEncoding("utf8").on("data", (text: string) => {
      pending += text;
      for (let end = pending.indexOf("\n"); end >= 0; end = pending.indexOf("\n")) {
        const line = pending.slice(0, end);
        pending = pending.slice(end + 1);
        if (line === "bound") bound();
        else receiver.messages.push((JSON.parse(line) as string).split("\n").filter((assignment) => assignment !== ""));
      }
    });
    await withTimeout(isBound, NOTIFY_TIMEOUT_MS, () => `the notify receiver did not bind ${address}`);
    return receiver;
  }

  async waitFor(assignment: string): Promise<string[]> {
    let found: string[] | undefined;
    await eventually(
      () => Promise.resolve((found = this.messages.find((message) => message.includes(assignment))) !== undefined),
      NOTIFY_TIMEOUT_MS,
      `${assignment} in ${JSON.stringify(this.messages)}`,
    );
    return found!;
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }
}

const receivers = new Set<NotifyReceiver>();
let dir: string;
let image: Buffer;

beforeAll(() => assertCliBuilt());
beforeEach(async () => {
  dir = await makeTempDir();
  await runCliOk(["create-pool", "data.img", "meta.img", "--size", "64M"], { cwd: dir });
  await runCliOk(["create", "base", "--size", String(VOLUME_BYTES)], { cwd: dir });
  image = seededBytes(VOLUME_BYTES, 7);
  await writeFile(path.join(dir, "base.raw"), image);
  await runCliOk(["import", "base", "base.raw"], { cwd: dir });
});
afterEach(async () => {
  killAllServers();
  for (const receiver of receivers) receiver.kill();
  receivers.clear();
  await removeTempDir(dir);
});

async function readExport(uri: string): Promise<Buffer> {
  const copy = path.join(dir, "copy.raw");
  await runToolOk("nbdcopy", [uri, copy]);
  return readFile(copy);
}

describe("socket activation", () => {
  it("serves NBD on a TCP socket passed in LISTEN_FDS, and on nothing else", async () => {
    const server = await startServe([], { cwd: dir, launcher: launcher("tcp") });
    const listening = server.stdout.match(/^listening on .*$/gm) ?? [];
    expect(listening).toHaveLength(1);
    expect(server.port).not.toBeNull();
    expect(server.port).not.toBe(10809);

    expect(await listedExports(`nbd://127.0.0.1:${server.port}`)).toEqual(["base"]);
    expect((await readExport(server.uri("base"))).equals(image)).toBe(true);
    // Management still goes through the control socket beside the pool.
    expect(await runCliOk(["list"], { cwd: dir })).toMatch(/base/);
    expect(await server.stop()).toBe(0);
  });

  it("serves NBD on a Unix socket passed in LISTEN_FDS, names it, and leaves it to its owner", async () => {
    const socketPath = path.join(dir, "base.nbd");
    const server = await startServe([], { cwd: dir, launcher: launcher("unix", socketPath) });
    expect(server.stdout).toContain(`listening on ${socketPath}  (nbd+unix:///NAME?socket=${encodeURIComponent(socketPath)})`);

    const uri = `nbd+unix:///base?socket=${socketPath}`;
    expect(await listedExports(`nbd+unix:///?socket=${socketPath}`)).toEqual(["base"]);
    expect((await readExport(uri)).equals(image)).toBe(true);
    expect(await server.stop()).toBe(0);
    // The service manager made the socket and keeps listening on it for the next start.
    expect(existsSync(socketPath)).toBe(true);
  });

  it("refuses --listen and --socket with activation, as nbdkit refuses -p and -U", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.THINP_POOL;
    for (const option of [
      ["--listen", "127.0.0.1:0"],
      ["--socket", "other.sock"],
    ]) {
      const result = await runProgram(launcher("tcp")[0]!, [...launcher("tcp").slice(1), process.execPath, CLI_PATH, "serve", ...option], {
        cwd: dir,
        env,
        timeoutMs: LAUNCH_TIMEOUT_MS,
      });
      expect(result.exitCode, result.stderr).toBe(2);
      expect(result.stderr).toContain(`${option[0]} cannot be used with socket activation (LISTEN_FDS)`);
    }
  });

  it("ignores LISTEN_FDS meant for another process (LISTEN_PID not its own)", async () => {
    const server = await startServe(["--listen", "127.0.0.1:0"], { cwd: dir, launcher: launcher("tcp", "-", "1") });
    expect(await listedExports(`nbd://127.0.0.1:${server.port}`)).toEqual(["base"]);
    expect(await server.stop()).toBe(0);
  });
});

describe("readiness notification", () => {
  for (const [name, address] of [
    ["a socket path", () => path.join(dir, "notify.sock")],
    ["an abstract socket", () => `@thinp-test-notify-${process.pid}-${Date.now()}`],
  ] as const) {
    it(`sends READY=1 once serving and STOPPING=1 at SIGTERM, to ${name}`, async () => {
      const notifySocket = address();
      const receiver = await NotifyReceiver.bind(notifySocket);
      const server = await startServe([], { cwd: dir, launcher: launcher("tcp"), env: { NOTIFY_SOCKET: notifySocket } });

      const ready = await receiver.waitFor("READY=1");
      expect(ready).toContain(`STATUS=serving ${path.join(dir, "meta.img")} on 127.0.0.1:${server.port}`);
      // Ready means clients get answers.
      expect(await listedExports(`nbd://127.0.0.1:${server.port}`)).toEqual(["base"]);
      expect(receiver.messages.some((message) => message.includes("STOPPING=1"))).toBe(false);

      expect(await server.stop("SIGTERM")).toBe(0);
      const stopping = await receiver.waitFor("STOPPING=1");
      expect(stopping.find((assignment) => assignment.startsWith("STATUS="))).toMatch(/^STATUS=SIGTERM: /);
      // READY=1 came once, before STOPPING=1.
      const flags = receiver.messages.flat().filter((assignment) => !assignment.startsWith("STATUS="));
      expect(flags).toEqual(["READY=1", "STOPPING=1"]);
    });
  }

  it("serves as usual when the notify socket is not there", async () => {
    const server = await startServe(["--listen", "127.0.0.1:0"], { cwd: dir, env: { NOTIFY_SOCKET: path.join(dir, "missing.sock") } });
    await eventually(
      () => Promise.resolve(/cannot notify the service manager at .*missing\.sock: ENOENT/.test(server.stderr)),
      NOTIFY_TIMEOUT_MS,
      "the warning that the notification was lost",
    );
    expect(await listedExports(`nbd://127.0.0.1:${server.port}`)).toEqual(["base"]);
    expect(await server.stop()).toBe(0);
  });
});

describe("LISTEN_FDS and NOTIFY_SOCKET, read as systemd writes them", () => {
  it("takes descriptors 3 onwards for its own pid, and removes the variables either way", () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: "42", LISTEN_FDS: "2", LISTEN_FDNAMES: "a:b", PATH: "/bin" };
    expect(takeActivatedSockets(env, 42)).toEqual([3, 4]);
    expect(env).toEqual({ PATH: "/bin" });
    expect(takeActivatedSockets({ LISTEN_PID: "41", LISTEN_FDS: "1" }, 42)).toBeNull();
    expect(takeActivatedSockets({ LISTEN_PID: "42", LISTEN_FDS: "0" }, 42)).toBeNull();
    expect(takeActivatedSockets({ LISTEN_FDS: "1" }, 42)).toBeNull();
    expect(() => takeActivatedSockets({ LISTEN_PID: "42", LISTEN_FDS: "x" }, 42)).toThrow(/LISTEN_FDS=x/);
    expect(() => takeActivatedSockets({ LISTEN_PID: "42", LISTEN_FDS: String(LISTEN_FDS_MAX + 1) }, 42)).toThrow(/LISTEN_FDS=/);
  });

  it("encodes a path with its NUL, and an abstract name with a leading NUL and none after", () => {
    expect(encodeUnixAddress("/run/x")).toEqual(Buffer.from([1, 0, ...Buffer.from("/run/x"), 0]));
    expect(encodeUnixAddress("@x")).toEqual(Buffer.from([1, 0, 0, ...Buffer.from("x")]));
    expect(() => encodeUnixAddress("/" + "a".repeat(UNIX_PATH_BYTES_MAX))).toThrow(/longer than 108 bytes/);
  });
});
