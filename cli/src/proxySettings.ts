import { CliError } from './cliError.js';
import { firstNoProxyMatch, parseNoProxy } from './noProxy.js';

export type ProxyEnv = Readonly<Record<string, string | undefined>>;

export interface ProxySettings {
  // The proxy's origin, http: only, with any credentials removed so that printing it is safe.
  readonly url: URL;
  // `Basic ...`, built from the userinfo of the configured proxy URL.
  readonly authorization?: string;
}

// Which variables name the proxy, in order; the first non-empty one wins.
//
// - https:/wss: targets (the gateway, always): https_proxy, HTTPS_PROXY, then all_proxy,
//   ALL_PROXY. HTTP_PROXY is deliberately not consulted: it names the proxy for plain-http URLs,
//   and curl, Go and Python ignore it for https targets too.
// - http:/ws: targets (test set-ups only): http_proxy, HTTP_PROXY, all_proxy, ALL_PROXY.
// - Lower case before upper case, as curl, wget and Python do, so a shell export of the lower-case
//   form overrides an upper-case one inherited from the system.
// - no_proxy before NO_PROXY, likewise. An empty value counts as unset.
const proxyVariables = {
  secure: ['https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'],
  plain: ['http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY'],
} as const;
const noProxyVariables = ['no_proxy', 'NO_PROXY'] as const;

const defaultPorts: Readonly<Record<string, number>> = {
  'https:': 443,
  'wss:': 443,
  'http:': 80,
  'ws:': 80,
};

/** How the way to a target was chosen, for doctor. */
export interface ProxyChoice {
  proxy: ProxySettings | undefined;
  /** The variable that named the proxy (set even when NO_PROXY then sent the target direct). */
  variable: string | undefined;
  /** The NO_PROXY entry that sent the target direct, and the variable holding it. */
  bypass: { variable: string; entry: string } | undefined;
}

// Returns undefined for a direct connection. Throws CONFIG_INVALID for a proxy URL we cannot use
// or a malformed NO_PROXY, so that loadConfig can call this once up front to validate.
export function proxyFor(env: ProxyEnv, targetUrl: URL | string): ProxySettings | undefined {
  return proxyChoice(env, targetUrl).proxy;
}

export function proxyChoice(env: ProxyEnv, targetUrl: URL | string): ProxyChoice {
  const target = typeof targetUrl === 'string' ? new URL(targetUrl) : targetUrl;
  const defaultPort = defaultPorts[target.protocol];
  if (defaultPort === undefined) {
    throw new CliError(
      'CONFIG_INVALID',
      `expected an https:, wss:, http: or ws: gateway URL, got ${target.protocol}`,
    );
  }
  const secure = target.protocol === 'https:' || target.protocol === 'wss:';
  const chosen = firstSet(env, secure ? proxyVariables.secure : proxyVariables.plain);
  if (chosen === undefined) return { proxy: undefined, variable: undefined, bypass: undefined };

  // Parse NO_PROXY before deciding, so a malformed value is reported even when it would not
  // have mattered for this target.
  const noProxy = firstSet(env, noProxyVariables);
  const rules = noProxy === undefined ? [] : parseNoProxy(noProxy.value, noProxy.name);
  const proxy = parseProxyUrl(chosen.name, chosen.value);
  const port = target.port === '' ? defaultPort : Number(target.port);
  const match = firstNoProxyMatch(rules, target.hostname, port);
  if (match !== undefined) return { proxy: undefined, variable: chosen.name, bypass: { variable: noProxy!.name, entry: match.entry ?? '' } };
  return { proxy, variable: chosen.name, bypass: undefined };
}

// host:port of the proxy, for messages. Never includes credentials.
export function proxyLabel(proxy: ProxySettings): string {
  return `${proxy.url.hostname}:${proxy.url.port === '' ? 80 : proxy.url.port}`;
}

function firstSet(
  env: ProxyEnv,
  names: readonly string[],
): { name: string; value: string } | undefined {
  for (const name of names) {
    const value = env[name]?.trim();
    if (value !== undefined && value !== '') return { name, value };
  }
  return undefined;
}

function parseProxyUrl(variable: string, value: string): ProxySettings {
  // `proxy.corp:3128` without a scheme is common in the wild and means http, as in curl.
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
  const shown = redact(value);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CliError('CONFIG_INVALID', `${variable}: expected a proxy URL like http://proxy.example:3128, got "${shown}"`);
  }
  if (url.protocol === 'https:') {
    throw new CliError(
      'CONFIG_INVALID',
      `${variable}: https:// proxies are not supported, got "${shown}"; use the proxy's http:// ` +
        'address (the gateway connection inside the tunnel is still TLS end to end)',
    );
  }
  if (url.protocol !== 'http:') {
    throw new CliError(
      'CONFIG_INVALID',
      `${variable}: only http:// proxies are supported (HTTP CONNECT), got ${url.protocol}// in "${shown}"`,
    );
  }
  if (url.hostname === '') {
    throw new CliError('CONFIG_INVALID', `${variable}: proxy URL "${shown}" has no host`);
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
    throw new CliError(
      'CONFIG_INVALID',
      `${variable}: expected a proxy URL without path, query or fragment, got "${shown}"`,
    );
  }

  let authorization: string | undefined;
  if (url.username !== '' || url.password !== '') {
    let username: string;
    let password: string;
    try {
      username = decodeURIComponent(url.username);
      password = decodeURIComponent(url.password);
    } catch {
      throw new CliError(
        'CONFIG_INVALID',
        `${variable}: the proxy credentials contain a malformed %-escape (in "${shown}")`,
      );
    }
    if (username.includes(':')) {
      // Basic auth cannot carry a colon in the user name: the first colon ends it.
      throw new CliError('CONFIG_INVALID', `${variable}: the proxy user name may not contain ":"`);
    }
    authorization = `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
  }

  const clean = new URL(`http://${url.host}`);
  return authorization === undefined ? { url: clean } : { url: clean, authorization };
}

// Messages quote the configured value to show what was read, minus any password in it.
function redact(value: string): string {
  const schemeEnd = value.indexOf('://');
  const userinfoStart = schemeEnd < 0 ? 0 : schemeEnd + 3;
  const at = value.lastIndexOf('@');
  if (at < userinfoStart) return value;
  return `${value.slice(0, userinfoStart)}***${value.slice(at)}`;
}
