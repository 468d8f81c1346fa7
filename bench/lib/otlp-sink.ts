/**
 * A stand-in OpenTelemetry collector for benches: a node:http server taking
 * OTLP/HTTP protobuf at `POST /v1/traces` (what the platform's exporter
 * sends with OTEL_EXPORTER_OTLP_ENDPOINT set), answering 200 with an empty
 * ExportTraceServiceResponse, and counting the requests, bytes and spans by
 * name it received. It decodes only as far as span names (a few lines of
 * protobuf walking, no generated code), so what it costs the bench process
 * is close to reading the bytes.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

export interface OtlpSink {
  /** The base URL, for OTEL_EXPORTER_OTLP_ENDPOINT. */
  endpoint: string;
  /** Totals so far. */
  stats(): OtlpSinkStats;
  close(): Promise<void>;
}

export interface OtlpSinkStats {
  requests: number;
  /** Request bytes as sent (before any gunzip). */
  bytes: number;
  spans: number;
  spansByName: Map<string, number>;
  /** Requests that were not POST /v1/traces, or whose bodies did not parse. */
  rejected: number;
}

export async function startOtlpSink(): Promise<OtlpSink> {
  const stats: OtlpSinkStats = { requests: 0, bytes: 0, spans: 0, spansByName: new Map(), rejected: 0 };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        stats.rejected++;
        res.writeHead(404).end();
        return;
      }
      const raw = Buffer.concat(chunks);
      stats.requests++;
      stats.bytes += raw.length;
      try {
        const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
        for (const name of spanNames(body)) {
          stats.spans++;
          stats.spansByName.set(name, (stats.spansByName.get(name) ?? 0) + 1);
        }
      } catch {
        stats.rejected++;
      }
      // An empty ExportTraceServiceResponse: everything accepted.
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stats: () => ({ ...stats, spansByName: new Map(stats.spansByName) }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * The name of every span in an ExportTraceServiceRequest:
 * resource_spans (1) → scope_spans (2) → spans (2) → name (5).
 */
export function spanNames(buf: Uint8Array): string[] {
  const names: string[] = [];
  for (const rs of fields(buf, 0, buf.length)) {
    if (rs.field !== 1 || rs.wire !== 2) continue;
    for (const ss of fields(buf, rs.start, rs.end)) {
      if (ss.field !== 2 || ss.wire !== 2) continue;
      for (const span of fields(buf, ss.start, ss.end)) {
        if (span.field !== 2 || span.wire !== 2) continue;
        let name = '';
        for (const f of fields(buf, span.start, span.end)) {
          if (f.field === 5 && f.wire === 2) name = Buffer.from(buf.buffer, buf.byteOffset + f.start, f.end - f.start).toString('utf8');
        }
        names.push(name);
      }
    }
  }
  return names;
}

interface Field {
  field: number;
  wire: number;
  /** For length-delimited fields (wire 2): where the bytes are. */
  start: number;
  end: number;
}

/** The top-level fields of the protobuf message in buf[start, end). */
function* fields(buf: Uint8Array, start: number, end: number): Generator<Field> {
  let pos = start;
  const varint = (): number => {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (pos >= end) throw new Error('protobuf: truncated varint');
      const b = buf[pos++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
      scale *= 128;
    }
  };
  while (pos < end) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) {
      varint();
      yield { field, wire, start: pos, end: pos };
    } else if (wire === 1 || wire === 5) {
      pos += wire === 1 ? 8 : 4;
      yield { field, wire, start: pos, end: pos };
    } else if (wire === 2) {
      const len = varint();
      const s = pos;
      pos += len;
      if (pos > end) throw new Error('protobuf: truncated field');
      yield { field, wire, start: s, end: pos };
    } else {
      throw new Error(`protobuf: wire type ${wire} not expected`);
    }
  }
}
