import { BlockList, isIP } from 'node:net';
import { invalidInput } from '@infer/errors';

/**
 * Addresses a webhook may never reach unless WEBHOOK_ALLOW_PRIVATE=true:
 * private, loopback, link-local, multicast, CGNAT, unspecified and the
 * other special-purpose ranges. Without this guard a tenant could make the
 * worker call services inside the deployment's network (SSRF).
 */
const blocked = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  blocked.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  // Site-local (deprecated, RFC 3879), still routed inside some older private networks; discard-only (RFC 6666).
  ['fec0::', 10],
  ['100::', 64],
  ['ff00::', 8],
  ['2001:db8::', 32],
  ['64:ff9b::', 96],
  // Local-use NAT64 (RFC 8215): a translator inside the deployment's network.
  ['64:ff9b:1::', 48],
  // Forms that carry an IPv4 address inside: IPv4-compatible (::a.b.c.d, deprecated), IPv4-translated
  // (::ffff:0:a.b.c.d, SIIT), 6to4, Teredo.
  ['::', 96],
  ['::ffff:0:0:0', 96],
  ['2002::', 16],
  ['2001::', 32],
] as const) {
  blocked.addSubnet(net, bits, 'ipv6');
}

/** Whether an IP address (v4, v6 or v4-mapped v6) is one a webhook may not reach. */
export function isForbiddenAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return blocked.check(mapped[1]!, 'ipv4');
  const family = isIP(address);
  if (family === 4) return blocked.check(address, 'ipv4');
  if (family === 6) return blocked.check(address, 'ipv6');
  return true;
}

const MAX_URL_LENGTH = 2048;

function decodes(component: string): boolean {
  try {
    decodeURIComponent(component);
    return true;
  } catch {
    return false;
  }
}

/**
 * Check a webhook URL at submit: http or https, no more than 2 KiB, and
 * (unless private targets are allowed) not a literal private address or a
 * localhost name. Names are checked again after DNS resolution at delivery.
 * Throws a 422 `webhook_url_not_allowed`.
 */
export function assertWebhookUrlAllowed(raw: string, allowPrivate: boolean): URL {
  const reject = (why: string) => invalidInput(`webhook URL not allowed: ${why}`, 'webhook_url_not_allowed');
  if (raw.length > MAX_URL_LENGTH) throw reject(`longer than ${MAX_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw reject('not an absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw reject('only http and https are allowed');
  if (!url.hostname) throw reject('no host');
  // Node's http client decodes the user-info to send it as Basic credentials, and throws on a bad escape.
  if (!decodes(url.username) || !decodes(url.password)) throw reject('its user name or password has a malformed %-escape');
  // Nothing listens on port 0: every attempt would be refused, retried for hours.
  if (url.port === '0') throw reject('port 0');
  if (allowPrivate) return url;
  // A trailing dot names the same host (`localhost.` is localhost), so it must not slip past the name checks.
  const host = url.hostname.replace(/^\[|\]$/g, '').replace(/\.+$/, '').toLowerCase();
  if (isIP(host)) {
    if (isForbiddenAddress(host)) throw reject('private, loopback, link-local and multicast addresses are refused');
  } else if (!host || host === 'localhost' || host.endsWith('.localhost') || !host.includes('.')) {
    throw reject('local host names are refused');
  }
  return url;
}
