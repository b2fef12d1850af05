import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger } from '../../src/log/index.js';
import { createRedisClient, type RedisConfig } from '../../src/session/redis-store.js';
import { startRedis } from '../support/redis.js';

class Capture extends Writable {
  text = '';

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.text += String(chunk);
    done();
  }
}

t.test('a Redis password refused by the server is not logged with the error (ioredis puts it on the failed AUTH)', async (t) => {
  const redis = await startRedis((port) => ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--requirepass', 'right-password']);
  t.teardown(() => redis.stop());
  const output = new Capture();
  const logger = createLogger('info', output);
  const errors: Error[] = [];
  // As the sidecar logs its connection errors (src/server/index.ts).
  const config = { url: redis.url.replace('redis://', 'redis://:wrong-password-7f3a@'), keyPrefix: 't:', tls: false } as RedisConfig;
  const client = createRedisClient(config, (error) => {
    errors.push(error);
    logger.warn({ err: error }, 'redis connection error');
  });
  t.teardown(() => client.disconnect());
  while (errors.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
  t.match(output.text, /WRONGPASS|invalid username-password/, 'the error is logged');
  t.notMatch(output.text, /wrong-password-7f3a/, 'the password is not');
});

t.test('secret fields are redacted at the top level and one level down', async (t) => {
  const output = new Capture();
  const logger = createLogger('info', output);
  logger.info({ token: 'tok-1', secret: 'sec-1', request: { cookie: 'c-1', password: 'p-1' } }, 'x');
  for (const value of ['tok-1', 'sec-1', 'c-1', 'p-1']) t.notOk(output.text.includes(value), value);
  t.match(output.text, /"token":"\[redacted\]"/);
});
