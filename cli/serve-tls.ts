// `thinp serve`'s TLS options: which credentials, whether TLS is required, and the refusal
// to serve in clear on an address other machines can reach.

import { Option, type Command } from "commander";
import { stat, readFile } from "node:fs/promises";
import { InvalidArgumentError } from "../src/errors.js";
import type { NbdTlsMode, NbdTlsOptions } from "../src/nbd/index.js";
import type { ListenAddress } from "./listen-address.js";
import { PSK_FILE_BYTES_MAX, parsePskFile } from "./psk-file.js";
import { onUserFile } from "./user-files.js";

/** A certificate chain, key or CA bundle larger than this is not one. */
const PEM_FILE_BYTES_MAX = 1024 * 1024;

const TLS_MODES = ["require", "allow", "off"] as const;
type TlsModeChoice = (typeof TLS_MODES)[number];

export interface ServeTlsOptions {
  tls?: TlsModeChoice;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsPsk?: string;
  insecure?: boolean;
}

export function addTlsOptions(command: Command): Command {
  return command
    .option("--tls-cert <file>", "the server's X.509 certificate (PEM; a chain may follow it); needs --tls-key")
    .option("--tls-key <file>", "the private key of --tls-cert (PEM)")
    .option("--tls-ca <file>", "with --tls-cert: clients must present a certificate this CA (PEM) signed")
    .option("--tls-psk <file>", "pre-shared keys instead of certificates: lines 'identity:hexkey', as psktool writes")
    .addOption(
      new Option(
        "--tls <mode>",
        "require: no option but STARTTLS before TLS; allow: plaintext clients too; off (default: require with credentials, else off)",
      ).choices(TLS_MODES),
    )
    .option("--insecure", "serve without TLS on an address other than loopback");
}

/** The TLS the server offers, or undefined for none; files are read and checked here, before anything starts. */
export async function loadServeTls(options: ServeTlsOptions): Promise<NbdTlsOptions | undefined> {
  const hasCertificate = options.tlsCert !== undefined || options.tlsKey !== undefined;
  const hasPsk = options.tlsPsk !== undefined;
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) {
    throw new InvalidArgumentError("--tls-cert and --tls-key go together: the certificate and its private key");
  }
  if (options.tlsCa !== undefined && options.tlsCert === undefined) {
    throw new InvalidArgumentError("--tls-ca checks client certificates, which needs the server's own: add --tls-cert and --tls-key");
  }
  if (hasCertificate && hasPsk) throw new InvalidArgumentError("use either certificates (--tls-cert, --tls-key) or --tls-psk, not both");
  const mode: TlsModeChoice = options.tls ?? (hasCertificate || hasPsk ? "require" : "off");
  if (mode === "off") {
    if (hasCertificate || hasPsk) throw new InvalidArgumentError("--tls off contradicts --tls-cert/--tls-psk: drop one or the other");
    return undefined;
  }
  const tlsMode: NbdTlsMode = mode;
  if (options.tlsPsk !== undefined) {
    const text = await readSmallFile(options.tlsPsk, "pre-shared key file", PSK_FILE_BYTES_MAX);
    return { mode: tlsMode, credentials: { kind: "psk", keys: parsePskFile(text.toString("utf8"), options.tlsPsk) } };
  }
  if (options.tlsCert === undefined || options.tlsKey === undefined) {
    throw new InvalidArgumentError(`--tls ${mode} needs credentials: --tls-cert FILE --tls-key FILE, or --tls-psk FILE`);
  }
  const certificatePem = await readSmallFile(options.tlsCert, "TLS certificate", PEM_FILE_BYTES_MAX);
  const keyPem = await readSmallFile(options.tlsKey, "TLS key", PEM_FILE_BYTES_MAX);
  const clientCaPem =
    options.tlsCa === undefined ? undefined : await readSmallFile(options.tlsCa, "TLS CA certificate", PEM_FILE_BYTES_MAX);
  await checkCredentials(certificatePem, keyPem, clientCaPem, options);
  return { mode: tlsMode, credentials: { kind: "x509", certificatePem, keyPem, clientCaPem } };
}

/** Bad PEM, or a key that is not the certificate's, fails here with the file's name rather than at the first client. */
async function checkCredentials(
  certificatePem: Buffer,
  keyPem: Buffer,
  clientCaPem: Buffer | undefined,
  options: ServeTlsOptions,
): Promise<void> {
  const tls = await import("node:tls");
  const attempt = (what: string, make: () => unknown): void => {
    try {
      make();
    } catch (failure) {
      throw new InvalidArgumentError(`${what}: ${(failure as Error).message}`);
    }
  };
  attempt(`${options.tlsCert}`, () => tls.createSecureContext({ cert: certificatePem }));
  attempt(`${options.tlsKey} with ${options.tlsCert}`, () => tls.createSecureContext({ cert: certificatePem, key: keyPem }));
  if (clientCaPem !== undefined) {
    if (!clientCaPem.includes("-----BEGIN CERTIFICATE-----")) throw new InvalidArgumentError(`${options.tlsCa} holds no PEM certificate`);
    attempt(`${options.tlsCa}`, () => tls.createSecureContext({ ca: clientCaPem }));
  }
}

async function readSmallFile(filePath: string, what: string, bytesMax: number): Promise<Buffer> {
  return onUserFile(filePath, what, async () => {
    const stats = await stat(filePath);
    if (stats.size > bytesMax) throw new InvalidArgumentError(`${filePath} has ${stats.size} bytes, too many for a ${what}`);
    return readFile(filePath);
  });
}

/** True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  const lower = host.toLowerCase();
  return lower === "localhost" || lower === "::1" || /^(?:::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(lower);
}

/**
 * NBD in clear gives anyone who can reach the port every volume, to read and to write; on
 * a network that is rarely meant, so it takes --insecure. `allow` counts as clear, since a
 * client may simply not start TLS.
 */
export function refuseInsecureListen(listen: ListenAddress | undefined, tls: NbdTlsOptions | undefined, insecure: boolean): void {
  if (listen === undefined || isLoopbackHost(listen.host) || insecure) return;
  if (tls?.mode === "require") return;
  const address = listen.host.includes(":") ? `[${listen.host}]:${listen.port}` : `${listen.host}:${listen.port}`;
  const why =
    tls === undefined
      ? "without TLS, data and commands cross the network in clear"
      : "with --tls allow, clients that do not start TLS are served in clear";
  throw new InvalidArgumentError(
    `refusing to listen on ${address}, which is not a loopback address: ${why}, and anyone who can reach the port can read and write every volume. ` +
      "Serve with TLS (--tls-cert FILE --tls-key FILE [--tls-ca FILE], or --tls-psk FILE), or add --insecure if the network is trusted",
  );
}

/** What the banner says about TLS: which credentials, and the URI form TLS clients take. */
export function tlsBannerLines(tls: NbdTlsOptions | undefined, hostPort: string | undefined): string[] {
  if (tls === undefined) return [];
  const where = hostPort ?? "HOST:PORT";
  const credentials = tls.credentials;
  const how =
    credentials.kind === "psk"
      ? `pre-shared keys (${credentials.keys.size} identit${credentials.keys.size === 1 ? "y" : "ies"}); libnbd: nbds://IDENTITY@${where}/NAME?tls-psk-file=FILE`
      : `X.509${credentials.clientCaPem === undefined ? "" : ", client certificates checked"}; libnbd: nbds://${where}/NAME?tls-certificates=DIR, ` +
        "qemu: --object tls-creds-x509,id=tls0,endpoint=client,dir=DIR and tls-creds=tls0";
  const mode = tls.mode === "require" ? "TLS required (the plaintext commands below are refused)" : "TLS offered, not required";
  return [`${mode}: ${how}`];
}
