import { expect } from 'chai';
import express from 'express';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError, loadConfig } from '@infer/config';
import { silentLogger } from '@infer/logger';
import { requireAdminKey } from '../apps/gateway/src/http/admin-auth.js';
import { problemMiddleware } from '../apps/gateway/src/http/problem-middleware.js';

const problems = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
    return [];
  } catch (err) {
    return (err as ConfigError).problems;
  }
};

describe('ADMIN_API_KEYS', () => {
  it('holds name:key pairs as digests, never the keys', () => {
    const config = loadConfig({ API_KEYS: 'acme:tenant-key', ADMIN_API_KEYS: 'alice:admin-key-1, bob:admin-key-2' });
    expect([...config.adminKeyDigests.values()]).to.deep.equal(['alice', 'bob']);
    expect(JSON.stringify([...config.adminKeyDigests])).to.not.contain('admin-key-1');
    expect(loadConfig({}).adminKeyDigests.size).to.equal(0);
  });

  it('refuses malformed entries, duplicates and a key that is also a tenant\'s, without quoting a key', () => {
    const found = problems({ API_KEYS: 'acme:shared-key', ADMIN_API_KEYS: 'alice:shared-key,no-colon-secret,bob:k,carol:k' }).join('\n');
    expect(found).to.contain('ADMIN_API_KEYS: the key of admin alice is also a tenant\'s API key');
    expect(found).to.contain('ADMIN_API_KEYS: entry 2 is not of the form name:key');
    expect(found).to.contain('ADMIN_API_KEYS: entry 4: a key is listed twice (name carol)');
    expect(found).to.not.contain('shared-key').and.not.contain('no-colon-secret');
  });
});

describe('requireAdminKey', () => {
  let server: Server;
  let base: string;
  const start = async (adminKeys: string | undefined, basicRealm?: string) => {
    const config = loadConfig({ API_KEYS: 'acme:tenant-key', ...(adminKeys ? { ADMIN_API_KEYS: adminKeys } : {}) });
    const app = express();
    const guard = requireAdminKey({ admins: config.adminKeyDigests, tenants: config.apiKeyDigests, ...(basicRealm ? { basicRealm } : {}) });
    app.get('/admin/whoami', guard, (req, res) => {
      res.json({ admin: req.admin });
    });
    app.use(problemMiddleware(silentLogger, 1024));
    await new Promise<void>((resolve) => (server = app.listen(0, '127.0.0.1', () => resolve())));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  };
  const get = (authorization?: string) => fetch(`${base}/admin/whoami`, { headers: authorization ? { authorization } : {} });
  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

  afterEach(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('lets an admin key through as req.admin; 401 without one, 403 for a tenant\'s key', async () => {
    await start('alice:admin-key');
    expect(await (await get('Bearer admin-key')).json()).to.deep.equal({ admin: 'alice' });
    const none = await get();
    expect(none.status).to.equal(401);
    // A Bearer challenge (RFC 9110 §15.5.2), never Basic: a browser prompts for Basic only, and only the dashboard asks for it.
    expect(none.headers.get('www-authenticate')).to.equal('Bearer realm="infer"');
    expect(((await none.json()) as { code: string }).code).to.equal('unauthorized');
    expect((await get('Bearer wrong')).status).to.equal(401);
    const tenant = await get('Bearer tenant-key');
    expect(tenant.status).to.equal(403);
    expect(((await tenant.json()) as { code: string; title: string })).to.include({ code: 'forbidden', title: 'Forbidden' });
    // Basic is only for the routes that ask for it (the dashboard).
    expect((await get(basic('x', 'admin-key'))).status).to.equal(401);
  });

  it('answers 403 on every request while no ADMIN_API_KEYS are set', async () => {
    await start(undefined);
    for (const auth of [undefined, 'Bearer tenant-key', 'Bearer anything']) expect((await get(auth)).status).to.equal(403);
  });

  it('with a realm, takes Basic credentials (the key as the password, or as the user with none) and challenges a 401', async () => {
    await start('alice:admin-key', 'infer admin');
    expect(await (await get(basic('anyone', 'admin-key'))).json()).to.deep.equal({ admin: 'alice' });
    expect(await (await get(basic('admin-key', ''))).json()).to.deep.equal({ admin: 'alice' });
    expect((await get(basic('anyone', 'tenant-key'))).status).to.equal(403);
    const wrong = await get(basic('anyone', 'nope'));
    expect(wrong.status).to.equal(401);
    expect(wrong.headers.get('www-authenticate')).to.match(/^Basic realm="infer admin"/);
  });
});
