import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import { CliError } from './cliError.js';

// NO_PROXY has no standard; tools disagree at the edges. This follows curl where curl has an
// answer (leading dot optional, `*` alone means everything) and adds what corporate setups
// expect from newer tools: `*.` wildcards, CIDR blocks and per-entry ports.
//
//   *                 every host
//   example.com       example.com and any subdomain
//   .example.com      the same (the leading dot is optional, as in curl)
//   *.example.com     subdomains only, not example.com itself
//   10.1.2.3, ::1     that address (brackets allowed: [::1])
//   10.0.0.0/8        any literal address in the block; also [fd00::]/8 and fd00::/8
//   entry:443         the entry, but only for connections to port 443 ([::1]:443 for IPv6)
//
// Host-name entries never match literal IP hosts and IP entries never match names: we do not
// resolve names, so `10.0.0.0/8` does not cover `build.internal` even if it resolves there.

export type NoProxyRule = RuleShape & {
  /** The entry as written in the variable, for messages (doctor says which one matched). */
  readonly entry?: string;
};

type RuleShape =
  | { readonly kind: 'all'; readonly port: number | undefined }
  | {
      readonly kind: 'name';
      readonly name: string;
      readonly subdomainsOnly: boolean;
      readonly port: number | undefined;
    }
  | {
      readonly kind: 'cidr';
      readonly family: 4 | 6;
      readonly network: bigint;
      readonly prefixLength: number;
      readonly port: number | undefined;
    };

interface Address {
  readonly family: 4 | 6;
  readonly value: bigint;
}

export function parseNoProxy(value: string, variableName = 'NO_PROXY'): NoProxyRule[] {
  const rules: NoProxyRule[] = [];
  const problems: string[] = [];
  for (const entry of value.split(/[\s,]+/)) {
    if (entry === '') continue;
    const rule = parseEntry(entry.toLowerCase());
    if (typeof rule === 'string') problems.push(`"${entry}": ${rule}`);
    else rules.push({ ...rule, entry });
  }
  if (problems.length > 0) {
    throw new CliError('CONFIG_INVALID', `${variableName} has invalid entries: ${problems.join('; ')}`);
  }
  return rules;
}

export function matchesNoProxy(rules: readonly NoProxyRule[], host: string, port: number): boolean {
  return firstNoProxyMatch(rules, host, port) !== undefined;
}

/** The first rule that sends host:port direct, if any. */
export function firstNoProxyMatch(rules: readonly NoProxyRule[], host: string, port: number): NoProxyRule | undefined {
  if (rules.length === 0) return undefined;
  const bare = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  const address = parseAddress(bare.replace(/%.*$/, ''));
  const name = address === undefined ? normaliseName(bare) : undefined;
  return rules.find((rule) => {
    if (rule.port !== undefined && rule.port !== port) return false;
    switch (rule.kind) {
      case 'all':
        return true;
      case 'name':
        if (name === undefined) return false;
        return (!rule.subdomainsOnly && name === rule.name) || name.endsWith(`.${rule.name}`);
      case 'cidr':
        return address !== undefined && inBlock(address, rule);
    }
  });
}

// Returns the rule, or a sentence saying what is wrong with the entry.
function parseEntry(entry: string): RuleShape | string {
  const split = splitPort(entry);
  if (typeof split === 'string') return split;
  const { hostPart, port, bracketed } = split;

  if (hostPart === '*') return { kind: 'all', port };

  const slash = hostPart.indexOf('/');
  if (slash >= 0) {
    const address = parseAddress(hostPart.slice(0, slash));
    if (address === undefined) return 'a CIDR block must start with an IP address';
    const lengthText = hostPart.slice(slash + 1);
    const maxLength = address.family === 4 ? 32 : 128;
    const prefixLength = Number(lengthText);
    if (!/^\d{1,3}$/.test(lengthText) || prefixLength > maxLength) {
      return `expected a prefix length from 0 to ${maxLength} after "/", got "${lengthText}"`;
    }
    return cidrRule(address, prefixLength, port);
  }

  const address = parseAddress(hostPart);
  if (address !== undefined) return cidrRule(address, address.family === 4 ? 32 : 128, port);
  if (bracketed) return 'brackets may only enclose an IPv6 address';

  let name = hostPart.replace(/\.+$/, '');
  let subdomainsOnly = false;
  if (name.startsWith('*.')) {
    subdomainsOnly = true;
    name = name.slice(2);
  } else if (name.startsWith('.')) {
    name = name.slice(1);
  }
  if (/(^|\.)\d+$/.test(name)) {
    // A numeric last label makes URL parsers read the host as IPv4, so this is a partial
    // address (some tools treat `192.168.` as a prefix); say how to write it instead.
    return 'not a host name or IP address (write address ranges as CIDR, e.g. 192.168.0.0/16)';
  }
  const ascii = normaliseName(name);
  if (ascii === undefined) {
    return 'expected *, a host name, *.domain, an IP address or a CIDR block';
  }
  return { kind: 'name', name: ascii, subdomainsOnly, port };
}

function splitPort(
  entry: string,
): { hostPart: string; port: number | undefined; bracketed: boolean } | string {
  let hostPart: string;
  let portText: string | undefined;
  let bracketed = false;
  if (entry.startsWith('[')) {
    const close = entry.indexOf(']');
    if (close < 0) return 'missing "]"';
    // `[fd00::]/8` and `[fd00::/8]` both appear in the wild; accept either, with a port after.
    const match = /^(\/[^:]*)?(?::(.*))?$/.exec(entry.slice(close + 1));
    if (match === null) return 'unexpected text after "]"';
    hostPart = entry.slice(1, close) + (match[1] ?? '');
    portText = match[2];
    bracketed = true;
  } else {
    const colons = entry.split(':').length - 1;
    if (colons === 1) {
      const colon = entry.indexOf(':');
      hostPart = entry.slice(0, colon);
      portText = entry.slice(colon + 1);
    } else {
      // Two or more colons: a bare IPv6 address, which cannot carry a port without brackets.
      hostPart = entry;
    }
  }
  if (hostPart === '') return 'no host before the port';
  if (portText === undefined) return { hostPart, port: undefined, bracketed };
  const port = Number(portText);
  if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) {
    return `expected a port from 1 to 65535 after ":", got "${portText}"`;
  }
  return { hostPart, port, bracketed };
}

function cidrRule(address: Address, prefixLength: number, port: number | undefined): RuleShape {
  const bits = address.family === 4 ? 32 : 128;
  // Host bits set in the entry (`10.1.2.3/8`) are ignored rather than rejected, as `ip route` does.
  return {
    kind: 'cidr',
    family: address.family,
    network: address.value & blockMask(bits, prefixLength),
    prefixLength,
    port,
  };
}

function inBlock(address: Address, rule: Extract<RuleShape, { kind: 'cidr' }>): boolean {
  let candidate = address;
  // An IPv4-mapped IPv6 host (::ffff:10.0.0.1) is the IPv4 host for routing purposes.
  if (candidate.family === 6 && rule.family === 4 && candidate.value >> 32n === 0xffffn) {
    candidate = { family: 4, value: candidate.value & 0xffffffffn };
  }
  if (candidate.family !== rule.family) return false;
  const bits = rule.family === 4 ? 32 : 128;
  return (candidate.value & blockMask(bits, rule.prefixLength)) === rule.network;
}

function blockMask(bits: number, prefixLength: number): bigint {
  const all = (1n << BigInt(bits)) - 1n;
  return all ^ ((1n << BigInt(bits - prefixLength)) - 1n);
}

function normaliseName(name: string): string | undefined {
  const ascii = domainToASCII(name.replace(/\.+$/, ''));
  return /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(ascii) ? ascii : undefined;
}

function parseAddress(text: string): Address | undefined {
  switch (isIP(text)) {
    case 4:
      return { family: 4, value: ipv4Value(text) };
    case 6:
      return { family: 6, value: ipv6Value(text) };
    default:
      return undefined;
  }
}

// Both parsers run only on text that net.isIP() accepted.
function ipv4Value(text: string): bigint {
  return text.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function ipv6Value(text: string): bigint {
  let groupsText = text;
  const lastColon = groupsText.lastIndexOf(':');
  const tail = groupsText.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = ipv4Value(tail);
    groupsText = `${groupsText.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = '', rest] = groupsText.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  let groups = headGroups;
  if (rest !== undefined) {
    const restGroups = rest === '' ? [] : rest.split(':');
    const zeros = Array<string>(8 - headGroups.length - restGroups.length).fill('0');
    groups = [...headGroups, ...zeros, ...restGroups];
  }
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(parseInt(group, 16)), 0n);
}
