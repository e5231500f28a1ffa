// TLS (NBD_OPT_STARTTLS): the option rules byte by byte against the server in process, then
// `thinp serve --tls-*` with the real clients (nbdinfo, nbdcopy, qemu-img) over X.509 and
// pre-shared keys, and the refusal to serve in clear on an address others can reach.

import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { NbdTlsOptions } from "../src/nbd/index.js";
import * as P from "../src/nbd/protocol.js";
import { startNbdServer, type NbdServer } from "../src/nbd/server.js";
import { Pool } from "../src/thin/pool.js";
import { runTool, runToolOk } from "./support/cli-real-clients.js";
import { assertCliBuilt, makeTempDir, removeTempDir, runCli, runCliOk, runProgram, seededBytes } from "./support/cli-run.js";
import { killAllServers, startServe, type ServeProcess } from "./support/cli-serve-process.js";
import { MemoryCatalog } from "./support/memory-catalog.js";
import { MemoryVolume } from "./support/memory-volume.js";
import { WireClient, infoData } from "./support/nbd-wire-client.js";
import { makePskFile, makeX509Files, type X509Files } from "./support/tls-credentials.js";

const MiB = 1024 * 1024;
const VOLUME_BYTES = 16 * MiB;

let credentialsRoot: string;
let x509: X509Files;
let pskFile: string;

beforeAll(async () => {
  assertCliBuilt();
  credentialsRoot = await makeTempDir();
  x509 = await makeX509Files(credentialsRoot);
  pskFile = path.join(credentialsRoot, "keys.psk");
  await makePskFile(pskFile, "alice");
}, 60_000);
afterAll(async () => {
  await removeTempDir(credentialsRoot);
});

describe("STARTTLS on the wire", () => {
  const running: NbdServer[] = [];
  const clients: WireClient[] = [];
  const logged: string[] = [];
  afterEach(async () => {
    logged.splice(0);
    for (const client of clients.splice(0)) client.close();
    await Promise.all(running.splice(0).map((server) => server.close()));
  });

  async function start(mode: NbdTlsOptions["mode"] | "none"): Promise<NbdServer> {
    const catalog = new MemoryCatalog();
    catalog.add(new MemoryVolume("disk", 1 * MiB), "the test disk");
    const tls: NbdTlsOptions | undefined =
      mode === "none"
        ? undefined
        : {
            mode,
            credentials: { kind: "x509", certificatePem: await readFile(x509.serverCert), keyPem: await readFile(x509.serverKey) },
          };
    const log = (_level: string, message: string) => logged.push(message);
    const server = await startNbdServer({ catalog, listen: { host: "127.0.0.1", port: 0 }, tls, log });
    running.push(server);
    return server;
  }

  async function handshake(server: NbdServer, flags?: number): Promise<WireClient> {
    const client = await WireClient.handshake(server, flags);
    clients.push(client);
    return client;
  }

  async function secured(client: WireClient): Promise<WireClient> {
    const secure = await client.startTls({ ca: await readFile(x509.caCert), servername: "localhost" });
    clients.push(secure);
    return secure;
  }

  async function onlyReply(client: WireClient, option: number, data: Uint8Array = Buffer.alloc(0)): Promise<number> {
    const replies = await client.optionReplies(option, data);
    expect(replies).toHaveLength(1);
    return replies[0]!.replyType;
  }

  it("a server requiring TLS answers every option but STARTTLS with TLS_REQD, and lists no export, until TLS is up", async () => {
    const server = await start("require");
    const client = await handshake(server);
    expect(await onlyReply(client, P.NBD_OPT_LIST)).toBe(P.NBD_REP_ERR_TLS_REQD);
    expect(await onlyReply(client, P.NBD_OPT_INFO, infoData("disk", []))).toBe(P.NBD_REP_ERR_TLS_REQD);
    expect(await onlyReply(client, P.NBD_OPT_GO, infoData("disk", []))).toBe(P.NBD_REP_ERR_TLS_REQD);
    expect(await onlyReply(client, P.NBD_OPT_STRUCTURED_REPLY)).toBe(P.NBD_REP_ERR_TLS_REQD);
    expect(await onlyReply(client, 99)).toBe(P.NBD_REP_ERR_TLS_REQD);
    // STARTTLS carries no data.
    expect(await onlyReply(client, P.NBD_OPT_STARTTLS, Buffer.from("x"))).toBe(P.NBD_REP_ERR_INVALID);

    const secure = await secured(client);
    const listed = await secure.optionReplies(P.NBD_OPT_LIST, Buffer.alloc(0));
    expect(listed.map((reply) => reply.replyType)).toEqual([P.NBD_REP_SERVER, P.NBD_REP_ACK]);
    // No second handshake inside the first, and no way back to plaintext.
    expect(await onlyReply(secure, P.NBD_OPT_STARTTLS)).toBe(P.NBD_REP_ERR_INVALID);
    const go = await secure.optionReplies(P.NBD_OPT_GO, infoData("disk", []));
    expect(go[go.length - 1]!.replyType).toBe(P.NBD_REP_ACK);
    const cookie = secure.send({ command: P.NBD_CMD_READ, offset: 0, length: 4096 });
    expect(await secure.readSimpleReply()).toEqual({ errno: 0, cookie });
    expect((await secure.read(4096)).equals(Buffer.alloc(4096))).toBe(true);
  });

  it("NBD_OPT_EXPORT_NAME before STARTTLS on a server requiring TLS ends the session, and ABORT is still acknowledged", async () => {
    const server = await start("require");
    const exporting = await handshake(server);
    exporting.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from("disk"));
    expect(await exporting.closesWithin()).toBe(true);
    expect(exporting.pendingBytes).toBe(0);

    const aborting = await handshake(server);
    expect(await onlyReply(aborting, P.NBD_OPT_ABORT)).toBe(P.NBD_REP_ACK);
    expect(await aborting.closesWithin()).toBe(true);
  });

  it("refuses TLS older than 1.2 and a client that speaks before STARTTLS is acknowledged, and keeps serving", async () => {
    const server = await start("require");
    const old = await handshake(server);
    await expect(
      old.startTls({ ca: await readFile(x509.caCert), servername: "localhost", minVersion: "TLSv1", maxVersion: "TLSv1.1" }),
    ).rejects.toThrow();
    expect(logged.find((message) => message.includes("TLS handshake failed"))).toMatch(/unsupported protocol/);

    const hasty = await handshake(server);
    // STARTTLS and, without waiting for its ACK, bytes that are not a TLS hello.
    hasty.sendOption(P.NBD_OPT_STARTTLS, Buffer.alloc(0));
    hasty.sendRaw(Buffer.from("plaintext"));
    expect(await hasty.closesWithin()).toBe(true);

    const good = await secured(await handshake(server));
    const listed = await good.optionReplies(P.NBD_OPT_LIST, Buffer.alloc(0));
    expect(listed.map((reply) => reply.replyType)).toEqual([P.NBD_REP_SERVER, P.NBD_REP_ACK]);
  });

  it("pre-shared keys work over TLS 1.2 too, and a wrong key is refused", async () => {
    const catalog = new MemoryCatalog();
    catalog.add(new MemoryVolume("disk", 1 * MiB));
    const key = Buffer.alloc(32, 7);
    const credentials = { kind: "psk", keys: new Map([["alice", key]]) } as const;
    const server = await startNbdServer({ catalog, listen: { host: "127.0.0.1", port: 0 }, tls: { mode: "require", credentials } });
    running.push(server);
    const tls12 = (psk: Buffer) => ({
      maxVersion: "TLSv1.2" as const,
      ciphers: "ECDHE-PSK-AES256-CBC-SHA384:PSK-AES128-GCM-SHA256",
      // No certificate with PSK, so no server identity to check.
      checkServerIdentity: () => undefined,
      pskCallback: () => ({ identity: "alice", psk }),
    });
    await expect((await handshake(server)).startTls(tls12(Buffer.alloc(32, 8)))).rejects.toThrow();
    const secure = await (await handshake(server)).startTls(tls12(key));
    clients.push(secure);
    expect((secure.socket as import("node:tls").TLSSocket).getProtocol()).toBe("TLSv1.2");
    const listed = await secure.optionReplies(P.NBD_OPT_LIST, Buffer.alloc(0));
    expect(listed.map((reply) => reply.replyType)).toEqual([P.NBD_REP_SERVER, P.NBD_REP_ACK]);
  });

  it("shutting down drops a client stalled in the TLS handshake at once", async () => {
    const server = await start("require");
    const stalled = await handshake(server);
    // ACKed, and then the client never sends its TLS hello.
    expect(await onlyReply(stalled, P.NBD_OPT_STARTTLS)).toBe(P.NBD_REP_ACK);
    const startedMs = Date.now();
    await server.close();
    expect(Date.now() - startedMs).toBeLessThan(5_000);
    expect(await stalled.closesWithin()).toBe(true);
  });

  it("a client without fixed newstyle cannot start TLS, so a server requiring it hangs up", async () => {
    const server = await start("require");
    const client = await handshake(server, 0);
    expect(await client.closesWithin()).toBe(true);
  });

  it("with TLS allowed, plaintext clients are served and STARTTLS forgets what was negotiated before it", async () => {
    const server = await start("allow");
    const plain = await handshake(server);
    const listed = await plain.optionReplies(P.NBD_OPT_LIST, Buffer.alloc(0));
    expect(listed.map((reply) => reply.replyType)).toEqual([P.NBD_REP_SERVER, P.NBD_REP_ACK]);

    const client = await handshake(server);
    expect(await onlyReply(client, P.NBD_OPT_STRUCTURED_REPLY)).toBe(P.NBD_REP_ACK);
    const secure = await secured(client);
    const go = await secure.optionReplies(P.NBD_OPT_GO, infoData("disk", []));
    expect(go[go.length - 1]!.replyType).toBe(P.NBD_REP_ACK);
    // Structured replies were agreed before STARTTLS only, so a read gets a simple reply.
    const cookie = secure.send({ command: P.NBD_CMD_READ, offset: 0, length: 512 });
    expect(await secure.readSimpleReply()).toEqual({ errno: 0, cookie });
  });

  it("a server without TLS answers STARTTLS with UNSUP and never TLS_REQD", async () => {
    const server = await start("none");
    const client = await handshake(server);
    expect(await onlyReply(client, P.NBD_OPT_STARTTLS)).toBe(P.NBD_REP_ERR_UNSUP);
    const listed = await client.optionReplies(P.NBD_OPT_LIST, Buffer.alloc(0));
    expect(listed.map((reply) => reply.replyType)).toEqual([P.NBD_REP_SERVER, P.NBD_REP_ACK]);
  });
});

describe("thinp serve with TLS", () => {
  let dir: string;
  const cwd = () => ({ cwd: dir });

  beforeEach(async () => {
    dir = await makeTempDir();
    const pool = await Pool.create(path.join(dir, "data.img"), path.join(dir, "meta.img"), { sizeBytes: 64 * MiB });
    await pool.createVolume("base", VOLUME_BYTES);
    await pool.commit();
    await pool.close();
  });
  afterEach(async () => {
    killAllServers();
    await removeTempDir(dir);
  });

  const certificateUri = (server: ServeProcess, certificatesDir: string) =>
    `nbds://127.0.0.1:${server.port}/base?tls-certificates=${encodeURIComponent(certificatesDir)}`;
  const pskUri = (server: ServeProcess, file: string, identity = "alice") =>
    `nbds://${identity}@127.0.0.1:${server.port}/base?tls-psk-file=${encodeURIComponent(file)}`;

  async function startX509(): Promise<ServeProcess> {
    return startServe(
      ["--listen", "127.0.0.1:0", "--tls-cert", x509.serverCert, "--tls-key", x509.serverKey, "--tls-ca", x509.caCert],
      cwd(),
    );
  }

  it("serves nbdinfo, qemu-img and nbdcopy over X.509 with client certificates, byte for byte", async () => {
    const server = await startX509();
    expect(server.stdout).toContain("TLS required (the plaintext commands below are refused): X.509, client certificates checked");
    const info = await runToolOk("nbdinfo", [certificateUri(server, x509.clientDir)]);
    expect(info).toContain("with TLS");
    expect(info).toContain("export-size: 16777216");

    const qemu = await runToolOk("qemu-img", [
      "info",
      "--object",
      `tls-creds-x509,id=tls0,endpoint=client,dir=${x509.clientDir}`,
      "--image-opts",
      `driver=nbd,host=127.0.0.1,port=${server.port},export=base,tls-creds=tls0`,
    ]);
    expect(qemu).toContain("virtual size: 16 MiB");

    const image = seededBytes(VOLUME_BYTES, 7);
    await writeFile(path.join(dir, "in.raw"), image);
    await runToolOk("nbdcopy", ["--flush", path.join(dir, "in.raw"), certificateUri(server, x509.clientDir)]);
    await runToolOk("nbdcopy", [certificateUri(server, x509.clientDir), path.join(dir, "out.raw")]);
    expect((await readFile(path.join(dir, "out.raw"))).equals(image)).toBe(true);

    expect(await server.stop()).toBe(0);
    await runCliOk(["export", "base", "exported.raw", "--pool", "meta.img"], cwd());
    expect((await readFile(path.join(dir, "exported.raw"))).equals(image)).toBe(true);
  }, 60_000);

  it("refuses plaintext clients, clients without a trusted certificate, and keeps serving the good ones", async () => {
    const server = await startX509();
    const plainUri = `nbd://127.0.0.1:${server.port}/base`;

    // nbdinfo only fails; the server's reason shows in libnbd's debug output.
    const plain = await runTool("nbdinfo", [plainUri]);
    expect(plain.exitCode).not.toBe(0);
    const debugged = await runProgram("nbdinfo", [plainUri], { env: { ...process.env, LIBNBD_DEBUG: "1" }, timeoutMs: 30_000 });
    expect(debugged.stderr).toContain("this server requires TLS");
    const listing = await runTool("nbdinfo", ["--list", plainUri]);
    expect(listing.exitCode).not.toBe(0);
    expect(listing.stdout).not.toContain("base");
    const qemuPlain = await runTool("qemu-img", ["info", "-f", "raw", plainUri]);
    expect(qemuPlain.exitCode).not.toBe(0);
    expect(qemuPlain.stderr).toMatch(/TLS/);

    const untrusted = await runTool("nbdinfo", [certificateUri(server, x509.untrustedClientDir)]);
    expect(untrusted.exitCode).not.toBe(0);
    // A folder with only the CA: the client sends no certificate at all.
    const anonymousDir = path.join(dir, "anonymous");
    await mkdir(anonymousDir);
    await writeFile(path.join(anonymousDir, "ca-cert.pem"), await readFile(x509.caCert));
    const anonymous = await runTool("nbdinfo", [certificateUri(server, anonymousDir)]);
    expect(anonymous.exitCode).not.toBe(0);

    expect(await runToolOk("nbdinfo", [certificateUri(server, x509.clientDir)])).toContain("with TLS");
    expect(server.stderr).toContain("TLS handshake failed");
    expect(await server.stop()).toBe(0);
  }, 60_000);

  it("serves over pre-shared keys, refusing a wrong key and an unknown identity", async () => {
    const server = await startServe(["--listen", "127.0.0.1:0", "--tls-psk", pskFile], cwd());
    expect(await runToolOk("nbdinfo", [pskUri(server, pskFile)])).toContain("with TLS");

    const wrongKeyFile = path.join(dir, "wrong.psk");
    await makePskFile(wrongKeyFile, "alice");
    expect((await runTool("nbdinfo", [pskUri(server, wrongKeyFile)])).exitCode).not.toBe(0);
    const strangerFile = path.join(dir, "stranger.psk");
    await writeFile(strangerFile, (await readFile(pskFile, "utf8")).replace(/^alice:/, "mallory:"));
    expect((await runTool("nbdinfo", [pskUri(server, strangerFile, "mallory")])).exitCode).not.toBe(0);
    expect(server.stderr).toContain('TLS handshake failed: unknown PSK identity "mallory"');

    const image = seededBytes(VOLUME_BYTES, 11);
    await writeFile(path.join(dir, "in.raw"), image);
    await runToolOk("nbdcopy", ["--flush", path.join(dir, "in.raw"), pskUri(server, pskFile)]);
    await runToolOk("nbdcopy", [pskUri(server, pskFile), path.join(dir, "out.raw")]);
    expect((await readFile(path.join(dir, "out.raw"))).equals(image)).toBe(true);
    expect(await server.stop()).toBe(0);
  }, 60_000);
});

describe("thinp serve refuses to serve in clear where others can connect", () => {
  let dir: string;
  const cwd = () => ({ cwd: dir });
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    killAllServers();
    await removeTempDir(dir);
  });

  it("--listen on a non-loopback address without TLS exits with why and how, before binding anything", async () => {
    // No pool exists: the refusal comes first, so the pool is never even opened.
    const result = await runCli(["serve", "--pool", "meta.img", "--listen", "0.0.0.0:0"], cwd());
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("refusing to listen on 0.0.0.0:0");
    expect(result.stderr).toContain("in clear");
    expect(result.stderr).toContain("read and write every volume");
    expect(result.stderr).toContain("--tls-cert FILE --tls-key FILE");
    expect(result.stderr).toContain("--tls-psk FILE");
    expect(result.stderr).toContain("--insecure");

    const allowing = await runCli(["serve", "--pool", "meta.img", "--listen", "[::]:0", "--tls-psk", pskFile, "--tls", "allow"], cwd());
    expect(allowing.exitCode).toBe(2);
    expect(allowing.stderr).toContain("with --tls allow, clients that do not start TLS are served in clear");
  });

  it("TLS options that do not fit together are usage errors", async () => {
    const cases: [string[], string][] = [
      [["--tls-cert", x509.serverCert], "--tls-cert and --tls-key go together"],
      [["--tls-cert", x509.serverCert, "--tls-key", x509.serverKey, "--tls-psk", pskFile], "not both"],
      [["--tls-ca", x509.caCert], "--tls-ca checks client certificates"],
      [["--tls", "require"], "--tls require needs credentials"],
      [["--tls", "off", "--tls-psk", pskFile], "--tls off contradicts"],
      [["--tls-cert", x509.serverCert, "--tls-key", x509.caCert], x509.caCert],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(["serve", "--pool", "meta.img", "--listen", "127.0.0.1:0", ...args], cwd());
      expect(result.exitCode, args.join(" ")).toBe(2);
      expect(result.stderr, args.join(" ")).toContain(message);
    }
    await writeFile(path.join(dir, "bad.psk"), "alice:abc\n");
    const badPsk = await runCli(["serve", "--pool", "meta.img", "--tls-psk", "bad.psk"], cwd());
    expect(badPsk.exitCode).toBe(2);
    expect(badPsk.stderr).toContain("bad.psk line 1");
  });
});
