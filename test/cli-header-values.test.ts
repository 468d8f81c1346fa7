/**
 * Flag values the CLI hands to fetch as they are.
 * docs/cli.md: exit 2 for a usage error, `error: …` on stderr, never a stack
 * trace. An API key or admin key that cannot be an HTTP header value (a
 * character past Latin-1, a line break inside it, as a key pasted from a
 * rich-text document may have), or a --url with user:password in it (fetch
 * refuses a URL with credentials), never reaches any gateway: the SDK's
 * client refuses it (InferArgumentError), without echoing the key, and the
 * CLI reports that as a usage error.
 */
import { expect } from 'chai';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { runCliProcess, type CliResult } from './helpers/cli.js';

function expectUsageError(res: CliResult, what: string): void {
  expect(res.stderr, `${what}: a stack trace on stderr`).to.not.match(/^\s+at /m);
  expect(res.stderr, `${what}: stderr`).to.match(/^error: /m);
  expect(res.code, `${what}: exit code (stderr: ${res.stderr})`).to.equal(2);
}

describe('cli: a key or URL fetch cannot send is a usage error, not a stack trace', function () {
  this.timeout(40_000);
  let server: http.Server;
  let url: string;
  let requests = 0;
  before(async () => {
    server = http.createServer((_req, res) => {
      requests++;
      res.writeHead(401, { 'content-type': 'application/problem+json' }).end('{"code":"unauthorized","status":401,"detail":"no","title":"Unauthorized","type":"about:blank"}');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  it('--api-key with a character past Latin-1 (INFER_API_KEY too)', async () => {
    expectUsageError(await runCliProcess(url, ['models', 'list', '--api-key', 'clé-€uro']), '--api-key clé-€uro');
    expectUsageError(await runCliProcess(url, ['models', 'list'], { INFER_API_KEY: 'ключ' }), 'INFER_API_KEY=ключ');
    expect(requests).to.equal(0);
  });

  it('--api-key with a line break inside it', async () => {
    expectUsageError(await runCliProcess(url, ['jobs', 'get', 'j1', '--api-key', 'dev\nkey']), '--api-key "dev\\nkey"');
  });

  it('--admin-key with a character past Latin-1', async () => {
    expectUsageError(await runCliProcess(url, ['models', 'load', 'mlp', '1', '--admin-key', 'admin—key']), '--admin-key admin—key');
  });

  it('--url with user:password in it', async () => {
    const withCredentials = url.replace('http://', 'http://user:secret@');
    expectUsageError(await runCliProcess(withCredentials, ['models', 'list']), '--url http://user:secret@…');
  });
});

describe('cli: batch list --limit outside the API\'s 1-100', function () {
  this.timeout(40_000);
  let server: http.Server;
  let url: string;
  let requests = 0;
  before(async () => {
    server = http.createServer((_req, res) => {
      requests++;
      res.writeHead(400, { 'content-type': 'application/problem+json' }).end('{"code":"invalid_input","status":400,"detail":"query string: limit: Too big","title":"Bad Request","type":"about:blank"}');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  it('is a usage error before any request (exit 2), as models events --limit 101 is', async () => {
    const events = await runCliProcess(url, ['models', 'events', 'mlp', '--limit', '101', '--admin-key', 'a']);
    expect(events.code, 'models events --limit 101').to.equal(2);
    const res = await runCliProcess(url, ['batch', 'list', '--limit', '101']);
    expect(res.code, `batch list --limit 101 (stderr: ${res.stderr})`).to.equal(2);
    expect(requests).to.equal(0);
  });
});
