import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import type { LookupFunction } from 'node:net';
import { isForbiddenAddress } from './url-guard.js';

/** Resolve a host name to every address it has (dns.lookup with `all: true`). Injectable for tests. */
export type Resolver = (hostname: string) => Promise<LookupAddress[]>;

export const systemResolver: Resolver = (hostname) =>
  new Promise((resolve, reject) => {
    dnsLookup(hostname, { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses)));
  });

/** The error a delivery gets when the webhook's host resolves to an address it may not reach. */
export class ForbiddenAddressError extends Error {
  readonly code = 'ERR_WEBHOOK_ADDRESS_FORBIDDEN';
  constructor(
    readonly hostname: string,
    readonly address: string,
  ) {
    super(`${hostname} resolves to ${address}, a private, loopback, link-local or multicast address; refused`);
    this.name = 'ForbiddenAddressError';
  }
}

/**
 * A `lookup` for http(s).request that checks every address a name resolves
 * to. Checking inside the socket's own lookup (rather than resolving once
 * beforehand and then connecting by name) closes the DNS-rebinding gap: the
 * address checked is the address connected to.
 *
 * A name with any forbidden address is refused outright, not trimmed to its
 * public ones: a host that also points inside the network is not one to call.
 * With `allowPrivate` nothing is refused (tests, private deployments).
 */
export function guardedLookup(options: { allowPrivate: boolean; resolve?: Resolver }): LookupFunction {
  const resolve = options.resolve ?? systemResolver;
  return (hostname, lookupOptions, callback) => {
    resolve(hostname).then(
      (all) => {
        const family = lookupOptions.family === 4 || lookupOptions.family === 'IPv4' ? 4 : lookupOptions.family === 6 || lookupOptions.family === 'IPv6' ? 6 : 0;
        const addresses = family ? all.filter((a) => a.family === family) : all;
        if (!options.allowPrivate) {
          const bad = addresses.find((a) => isForbiddenAddress(a.address));
          if (bad) return callback(new ForbiddenAddressError(hostname, bad.address), '', 0);
        }
        const first = addresses[0];
        if (!first) {
          const err: NodeJS.ErrnoException = new Error(`no address found for ${hostname}`);
          err.code = 'ENOTFOUND';
          return callback(err, '', 0);
        }
        if (lookupOptions.all) return callback(null, addresses);
        return callback(null, first.address, first.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    );
  };
}
