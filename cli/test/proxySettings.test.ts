import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CliError } from '../src/cliError.js';
import { proxyFor, proxyLabel, type ProxyEnv } from '../src/proxySettings.js';

const gateway = 'https://gw.example.com:8443';

function proxyHost(env: ProxyEnv, target = gateway): string | undefined {
  const proxy = proxyFor(env, target);
  return proxy === undefined ? undefined : proxyLabel(proxy);
}

function configInvalid(pattern: RegExp) {
  return (err: unknown) => err instanceof CliError && err.code === 'CONFIG_INVALID' && pattern.test(err.message);
}

test('no proxy variables means a direct connection', () => {
  assert.equal(proxyFor({}, gateway), undefined);
  assert.equal(proxyFor({ HTTPS_PROXY: '  ' }, gateway), undefined);
});

test('https targets use https_proxy, then HTTPS_PROXY, then all_proxy, then ALL_PROXY', () => {
  assert.equal(proxyHost({ HTTPS_PROXY: 'http://upper:1', https_proxy: 'http://lower:2' }), 'lower:2');
  assert.equal(proxyHost({ HTTPS_PROXY: 'http://upper:1', ALL_PROXY: 'http://all:3' }), 'upper:1');
  assert.equal(proxyHost({ ALL_PROXY: 'http://all:3', all_proxy: 'http://all-lower:4' }), 'all-lower:4');
  assert.equal(proxyHost({ https_proxy: '', HTTPS_PROXY: 'http://upper:1' }), 'upper:1');
  assert.equal(proxyHost({ HTTPS_PROXY: 'http://upper:1' }, 'wss://gw.example.com/'), 'upper:1');
});

test('HTTP_PROXY does not apply to an https gateway, only to http ones', () => {
  assert.equal(proxyHost({ HTTP_PROXY: 'http://plain:1', http_proxy: 'http://plain:1' }), undefined);
  assert.equal(proxyHost({ http_proxy: 'http://plain:1', HTTPS_PROXY: 'http://tls:2' }, 'http://gw.test/'), 'plain:1');
});

test('a proxy without scheme or port is http on port 80', () => {
  assert.equal(proxyHost({ HTTPS_PROXY: 'proxy.corp:3128' }), 'proxy.corp:3128');
  assert.equal(proxyHost({ HTTPS_PROXY: 'http://proxy.corp' }), 'proxy.corp:80');
  assert.equal(proxyHost({ HTTPS_PROXY: 'http://[::1]:3128/' }), '[::1]:3128');
});

test('userinfo becomes Basic Proxy-Authorization, percent-decoded, and leaves the URL', () => {
  const proxy = proxyFor({ HTTPS_PROXY: 'http://al%69ce:p%40ss%3Aw%C3%B6rd@proxy.corp:3128' }, gateway);
  assert.ok(proxy);
  assert.equal(proxy.authorization, `Basic ${Buffer.from('alice:p@ss:wörd').toString('base64')}`);
  assert.equal(proxy.url.href, 'http://proxy.corp:3128/');
  assert.equal(proxyFor({ HTTPS_PROXY: 'http://proxy.corp:3128' }, gateway)?.authorization, undefined);
});

test('NO_PROXY (no_proxy first) sends matching gateways direct, port included', () => {
  const env = { HTTPS_PROXY: 'http://proxy.corp:3128' };
  assert.equal(proxyFor({ ...env, NO_PROXY: 'example.com' }, gateway), undefined);
  assert.equal(proxyFor({ ...env, NO_PROXY: 'example.com:443' }, gateway)?.url.host, 'proxy.corp:3128');
  assert.equal(proxyFor({ ...env, NO_PROXY: 'example.com:443' }, 'https://gw.example.com/'), undefined);
  assert.equal(proxyFor({ ...env, no_proxy: 'other.test', NO_PROXY: 'example.com' }, gateway)?.url.host, 'proxy.corp:3128');
  assert.equal(proxyFor({ ...env, NO_PROXY: '::1' }, 'https://[::1]:9/'), undefined);
});

test('unusable proxy URLs are CONFIG_INVALID naming the variable, never the password', () => {
  const secret = 'hunter2';
  const cases: Array<[string, RegExp]> = [
    [`socks5://bob:${secret}@proxy:1080`, /^HTTPS_PROXY: only http:\/\/ proxies .*socks5:/],
    [`https://bob:${secret}@proxy:443`, /^HTTPS_PROXY: https:\/\/ proxies are not supported/],
    [`http://bob:${secret}@proxy:3128/some/path`, /without path/],
    [`http://bob:${secret}@proxy:99999`, /expected a proxy URL/],
    [`http://bob:%zz${secret}@proxy:3128`, /malformed %-escape/],
  ];
  for (const [value, pattern] of cases) {
    assert.throws(() => proxyFor({ HTTPS_PROXY: value }, gateway), configInvalid(pattern), value);
    assert.throws(() => proxyFor({ HTTPS_PROXY: value }, gateway), (err: Error) => !err.message.includes(secret));
  }
});

test('a malformed NO_PROXY is reported even when it would not matter', () => {
  assert.throws(
    () => proxyFor({ HTTPS_PROXY: 'http://proxy:3128', no_proxy: '10.0.0.0/99' }, gateway),
    configInvalid(/^no_proxy has invalid entries/),
  );
});
