// The HTTP listener Prometheus scrapes: GET /metrics, nothing else. Unauthenticated, like
// most exporters; it tells only counts, never data, and takes no commands.

import http from "node:http";
import type { Registry } from "prom-client";

export interface MetricsServer {
  readonly address: { host: string; port: number };
  close(): Promise<void>;
}

export const METRICS_PATH = "/metrics";

export async function startMetricsServer(listen: { host: string; port: number }, registry: Registry): Promise<MetricsServer> {
  const server = http.createServer((request, response) => {
    const path = (request.url ?? "").split("?")[0];
    if (path !== METRICS_PATH || (request.method !== "GET" && request.method !== "HEAD")) {
      response.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end(`not found; metrics are at ${METRICS_PATH}\n`);
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { "content-type": registry.contentType }).end(request.method === "HEAD" ? undefined : text),
      (error: unknown) => response.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end(`${String(error)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address();
  if (bound === null || typeof bound === "string") throw new Error(`metrics listener bound to ${String(bound)}`);
  return {
    address: { host: bound.address, port: bound.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // A scraper's keep-alive connection would otherwise hold close() open.
        server.closeAllConnections();
      }),
  };
}
