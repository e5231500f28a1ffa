// Throwaway TLS credentials for the TLS tests, made with openssl in a scratch folder: a CA,
// a server certificate for localhost and 127.0.0.1, a client certificate the CA signed, one
// from a CA nobody trusts, and a pre-shared key file. File names are the ones libnbd and
// QEMU look for in a certificates folder.

import { mkdir, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { runToolOk } from "./cli-real-clients.js";

export interface X509Files {
  /** ca-cert.pem, client-cert.pem, client-key.pem: what a client's certificates folder holds. */
  clientDir: string;
  /** The same, but the client certificate comes from another CA. */
  untrustedClientDir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
}

const DAYS = "2";

async function openssl(args: string[], cwd: string): Promise<void> {
  await runToolOk("openssl", args, { cwd });
}

async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "ca-key.pem",
      "-out",
      "ca-cert.pem",
      "-days",
      DAYS,
      "-subj",
      `/CN=${name}`,
    ],
    dir,
  );
}

async function signedCertificate(dir: string, caDir: string, stem: string, subject: string, extensions: string): Promise<void> {
  await openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${stem}-key.pem`, "-out", `${stem}.csr`, "-subj", subject], dir);
  await writeFile(path.join(dir, `${stem}.ext`), extensions);
  await openssl(
    [
      "x509",
      "-req",
      "-in",
      `${stem}.csr`,
      "-CA",
      path.join(caDir, "ca-cert.pem"),
      "-CAkey",
      path.join(caDir, "ca-key.pem"),
      "-CAcreateserial",
      "-out",
      `${stem}-cert.pem`,
      "-days",
      DAYS,
      "-extfile",
      `${stem}.ext`,
    ],
    dir,
  );
}

export async function makeX509Files(root: string): Promise<X509Files> {
  const serverDir = path.join(root, "pki-server");
  const clientDir = path.join(root, "pki-client");
  const rogueDir = path.join(root, "pki-rogue");
  const untrustedClientDir = path.join(root, "pki-untrusted-client");
  for (const dir of [serverDir, clientDir, rogueDir, untrustedClientDir]) await mkdir(dir, { recursive: true });
  await makeCa(serverDir, "thinp test CA");
  await makeCa(rogueDir, "untrusted CA");
  await signedCertificate(
    serverDir,
    serverDir,
    "server",
    "/CN=localhost",
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
  );
  await signedCertificate(clientDir, serverDir, "client", "/CN=client", "extendedKeyUsage=clientAuth\n");
  await signedCertificate(untrustedClientDir, rogueDir, "client", "/CN=intruder", "extendedKeyUsage=clientAuth\n");
  // Both client folders trust the server's CA; they differ only in who signed the client.
  for (const dir of [clientDir, untrustedClientDir]) {
    await openssl(["x509", "-in", path.join(serverDir, "ca-cert.pem"), "-out", path.join(dir, "ca-cert.pem")], dir);
  }
  return {
    clientDir,
    untrustedClientDir,
    caCert: path.join(serverDir, "ca-cert.pem"),
    serverCert: path.join(serverDir, "server-cert.pem"),
    serverKey: path.join(serverDir, "server-key.pem"),
  };
}

/** A psktool-style file with one identity and a fresh 32-byte key. */
export async function makePskFile(filePath: string, identity: string): Promise<Buffer> {
  const key = randomBytes(32);
  await writeFile(filePath, `${identity}:${key.toString("hex")}\n`, { mode: 0o600 });
  return key;
}
