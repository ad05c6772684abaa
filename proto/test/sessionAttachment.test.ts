import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SESSION_ATTACHMENT_MAX_BYTES, formatSessionAttachment, parseSessionAttachment } from '../src/sessionAttachment.js';

const good = { id: 'f3a9c0de41b2', name: 'slipway build app', sharedKey: '9f86d081884c7d65', methods: ['/moby.filesync.v1.FileSync/DiffCopy', '/moby.buildkit.secrets.v1.Secrets/GetSecret'] };

test('a session attachment round-trips through its header text', () => {
  assert.deepEqual(parseSessionAttachment(formatSessionAttachment(good)), good);
  // Fields it does not know are dropped, not passed on to dockerd.
  const parsed = parseSessionAttachment(JSON.stringify({ ...good, extra: 'x' }));
  assert.deepEqual(parsed, good);
});

// The agent writes these values into an HTTP/1.1 request: nothing that ends a line may pass.
const bad: Array<[string, string, string]> = [
  ['not JSON', 'id=1', 'is JSON {id, name, sharedKey, methods}'],
  ['a list', '[]', 'a JSON object'],
  ['no id', JSON.stringify({ ...good, id: undefined }), 'session id must be'],
  ['an id with a space', JSON.stringify({ ...good, id: 'a b' }), 'session id must be'],
  ['a name with CRLF', JSON.stringify({ ...good, name: 'x\r\nX-Injected: 1' }), 'session name must be'],
  ['a shared key with LF', JSON.stringify({ ...good, sharedKey: 'k\n' }), 'session sharedKey must be'],
  ['a name of 257 characters', JSON.stringify({ ...good, name: 'n'.repeat(257) }), 'session name must be'],
  ['no methods', JSON.stringify({ ...good, methods: [] }), 'a list of 1-64'],
  ['65 methods', JSON.stringify({ ...good, methods: Array.from({ length: 65 }, (_, i) => `/a.B/M${i}`) }), 'a list of 1-64'],
  ['a method that is not a gRPC path', JSON.stringify({ ...good, methods: ['/a.B/M', 'GET /'] }), 'must look like /package.Service/Method; got "GET /"'],
  ['a method with CR', JSON.stringify({ ...good, methods: ['/a.B/M\r'] }), 'must look like /package.Service/Method'],
  ['more than the limit', JSON.stringify({ ...good, name: 'x'.repeat(SESSION_ATTACHMENT_MAX_BYTES) }), `at most ${SESSION_ATTACHMENT_MAX_BYTES} bytes`],
];
for (const [what, text, fragment] of bad) {
  test(`a session attachment with ${what} is refused, saying what was expected`, () => {
    assert.throws(() => parseSessionAttachment(text), (err: Error) => {
      assert.ok(err.message.includes(fragment), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(fragment)}`);
      return true;
    });
  });
}
