import { expect } from 'chai';
import { ConfigError, loadConfig } from '@infer/config';
import { SHIPPED_MODELS } from './helpers/platform.js';
import { freePort } from './helpers/redis-server.js';
import { Spawned } from './helpers/spawned.js';

function configProblem(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error('loadConfig accepted it');
}

/**
 * A config error is printed to stderr by every process (lifecycle: console.error(err.message)), so into the
 * container's log. packages/config says of key entries: "naming the entry but never echoing it (without its
 * colon an entry may be a bare secret)". The likeliest slip, a pair written key:tenant, puts the key where the
 * tenant goes; base64 and URL-safe keys carry + / = which the tenant check refuses, quoting it.
 */
describe('secrets in what the processes print', function () {
  this.timeout(60_000);

  it('API_KEYS and ADMIN_API_KEYS written key:tenant are refused without printing the key', () => {
    const key = 'c2stbGl2ZS1zZWNyZXQ+/kEy==';
    for (const env of [{ API_KEYS: `${key}:acme` }, { API_KEYS: 'acme:k-1', ADMIN_API_KEYS: `${key}:ops` }] as Array<Record<string, string>>) {
      const message = configProblem(env);
      expect(message, JSON.stringify(env)).to.match(/API_KEYS/);
      expect(message, 'the key was printed').to.not.include(key);
    }
  });

  it('a gateway whose Redis (REDIS_URL with a password) refuses prints no password as it exits', async () => {
    const password = 'Rv-l0gs-p4ssw0rd-7731';
    const gw = new Spawned('start:gateway', {
      REDIS_URL: `redis://user:${password}@127.0.0.1:${await freePort()}/3`,
      MODEL_REPOSITORY: SHIPPED_MODELS,
      PORT: String(await freePort()),
      HOST: '127.0.0.1',
      API_KEYS: 'a:k-1',
    });
    try {
      const exit = await gw.exit(30_000);
      expect(exit.code).to.equal(1);
      const everything = JSON.stringify(gw.lines) + gw.errorOutput;
      expect(everything).to.include('ECONNREFUSED');
      expect(everything, 'the password was printed').to.not.include(password);
    } finally {
      gw.kill();
    }
  });
});
