import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CliError } from '../src/cliError.js';
import { matchesNoProxy, parseNoProxy } from '../src/noProxy.js';

// [NO_PROXY value, host, port, bypass the proxy?]
const cases: Array<[string, string, number, boolean]> = [
  // * and empty
  ['*', 'gateway.example.com', 443, true],
  ['*', '10.1.2.3', 443, true],
  ['*', '[::1]', 443, true],
  ['', 'gateway.example.com', 443, false],
  [' , ,', 'gateway.example.com', 443, false],
  ['*:8443', 'gateway.example.com', 8443, true],
  ['*:8443', 'gateway.example.com', 443, false],
  // names: exact and as domain suffix, with or without a leading dot
  ['example.com', 'example.com', 443, true],
  ['example.com', 'gw.example.com', 443, true],
  ['example.com', 'a.b.example.com', 443, true],
  ['.example.com', 'gw.example.com', 443, true],
  ['.example.com', 'example.com', 443, true],
  ['example.com', 'badexample.com', 443, false],
  ['example.com', 'example.com.evil.net', 443, false],
  ['example.com', 'example.org', 443, false],
  ['gw.example.com', 'example.com', 443, false],
  // *. wildcard: subdomains only
  ['*.example.com', 'gw.example.com', 443, true],
  ['*.example.com', 'a.b.example.com', 443, true],
  ['*.example.com', 'example.com', 443, false],
  ['*.example.com', 'notexample.com', 443, false],
  // case, trailing dots, separators
  ['EXAMPLE.Com', 'Gw.Example.COM', 443, true],
  ['example.com.', 'gw.example.com', 443, true],
  ['example.com', 'gw.example.com.', 443, true],
  ['foo.test, bar.test  baz.test', 'baz.test', 443, true],
  ['foo.test,bar.test', 'qux.test', 443, false],
  ['localhost', 'localhost', 443, true],
  // ports
  ['example.com:8443', 'gw.example.com', 8443, true],
  ['example.com:8443', 'gw.example.com', 443, false],
  ['10.0.0.1:443', '10.0.0.1', 443, true],
  ['10.0.0.1:443', '10.0.0.1', 444, false],
  ['[::1]:443', '::1', 443, true],
  ['[::1]:443', '[::1]', 8443, false],
  // IPv4 literals and CIDR
  ['127.0.0.1', '127.0.0.1', 443, true],
  ['127.0.0.1', '127.0.0.2', 443, false],
  ['10.0.0.0/8', '10.200.3.4', 443, true],
  ['10.0.0.0/8', '11.0.0.1', 443, false],
  ['192.168.1.0/24', '192.168.1.255', 443, true],
  ['192.168.1.0/24', '192.168.2.1', 443, false],
  ['10.1.2.3/8', '10.9.9.9', 443, true],
  ['0.0.0.0/0', '203.0.113.9', 443, true],
  ['10.0.0.0/8:443', '10.1.1.1', 443, true],
  ['10.0.0.0/8:443', '10.1.1.1', 80, false],
  ['10.0.0.0/8', '::ffff:10.1.2.3', 443, true],
  // IPv6 literals and CIDR, bare or bracketed
  ['::1', '::1', 443, true],
  ['[::1]', '[::1]', 443, true],
  ['::1', '::2', 443, false],
  ['fd00::/8', 'fd12:3456::1', 443, true],
  ['fd00::/8', 'fe80::1', 443, false],
  ['[fd00::]/8', '[fdff::1]', 443, true],
  ['[fd00::/8]:443', 'fd00::5', 443, true],
  ['[fd00::/8]:443', 'fd00::5', 80, false],
  ['2001:db8::/32', '2001:DB8:0:0:0:0:0:1', 443, true],
  ['2001:db8::/32', '2001:db9::1', 443, false],
  ['::ffff:0:0/96', '::ffff:192.0.2.1', 443, true],
  ['fe80::/10', 'fe80::1%eth0', 443, true],
  // names and addresses never match each other
  ['10.0.0.0/8', 'ten.example.com', 443, false],
  ['example.com', '93.184.216.34', 443, false],
  ['127.0.0.1', 'localhost', 443, false],
  // one matching entry among several is enough
  ['foo.test, 10.0.0.0/8, *.example.com', 'gw.example.com', 443, true],
];

for (const [value, host, port, expected] of cases) {
  test(`NO_PROXY=${JSON.stringify(value)} ${expected ? 'bypasses' : 'keeps'} the proxy for ${host}:${port}`, () => {
    assert.equal(matchesNoProxy(parseNoProxy(value), host, port), expected);
  });
}

test('international names are compared in their ASCII form', () => {
  assert.equal(matchesNoProxy(parseNoProxy('bücher.example'), 'build.xn--bcher-kva.example', 443), true);
});

const invalid: Array<[string, RegExp]> = [
  ['10.0.0.0/33', /prefix length from 0 to 32/],
  ['fd00::/129', /prefix length from 0 to 128/],
  ['example.com/8', /must start with an IP address/],
  ['example.com:0', /port from 1 to 65535/],
  ['example.com:http', /port from 1 to 65535/],
  ['[::1', /missing "]"/],
  ['[example.com]', /brackets may only enclose/],
  ['192.168.', /CIDR/],
  ['a*b.example.com', /expected \*, a host name/],
  [':443', /no host/],
];

for (const [value, message] of invalid) {
  test(`NO_PROXY=${JSON.stringify(value)} is rejected`, () => {
    assert.throws(
      () => parseNoProxy(value),
      (err: unknown) => err instanceof CliError && err.code === 'CONFIG_INVALID' && message.test(err.message),
    );
  });
}

test('every invalid entry is reported at once, under the variable name given', () => {
  assert.throws(
    () => parseNoProxy('ok.test, bad/1, also:bad', 'no_proxy'),
    (err: unknown) =>
      err instanceof CliError &&
      err.code === 'CONFIG_INVALID' &&
      err.message.startsWith('no_proxy ') &&
      err.message.includes('"bad/1"') &&
      err.message.includes('"also:bad"') &&
      !err.message.includes('ok.test'),
  );
});
