import { readFileSync } from 'node:fs';
import net from 'node:net';

/**
 * The kernel's ephemeral port range: where it picks a port for `listen(0)` and
 * for each outgoing connection. Linux's default is 32768–60999.
 */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low!, high!];
  } catch {
    // Not Linux: assume its default.
  }
  return [32768, 60999];
}

/** Ports this test process has handed out, so that two callers never get the same one. */
const handedOut = new Set<number>();

/**
 * A port nobody listens on right now, for a server a test starts later.
 *
 * It is picked outside the kernel's ephemeral range. A port from there (what
 * `listen(0)` gives) can be handed by the kernel to the next `listen(0)` or
 * outgoing connection of any process, such as a worker's metrics server on
 * port 0, before the test's own server binds it: CI saw a gateway fail to
 * start with EADDRINUSE that way.
 */
export async function freePort(): Promise<number> {
  const [low, high] = ephemeralRange();
  // Below the range when there is room there (the usual case), else above it.
  const [from, to] = low - 10_000 >= 1024 ? [low - 10_000, low - 1] : [high + 1, 65535];
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = from + Math.floor(Math.random() * (to - from + 1));
    if (handedOut.has(port) || !(await bindable(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port found between ${from} and ${to}`);
}

async function bindable(port: number): Promise<boolean> {
  const server = net.createServer();
  return new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
