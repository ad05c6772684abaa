import { createPrivateKey, sign, type JsonWebKey, type KeyObject } from 'node:crypto';

// An ssh-agent of our own for --ssh ID=KEYFILE (buildx does the same): the private keys are read
// here, never sent; the builder may only list them and ask for signatures. Unencrypted keys in
// OpenSSH's format (what ssh-keygen writes) and in PEM (PKCS#1, SEC1, PKCS#8): Ed25519, RSA and
// ECDSA on P-256/384/521. A passphrase-protected key is refused: there is no one to ask.

const SSH_AGENT_FAILURE = 5;
const SSH_AGENTC_REQUEST_IDENTITIES = 11;
const SSH_AGENT_IDENTITIES_ANSWER = 12;
const SSH_AGENTC_SIGN_REQUEST = 13;
const SSH_AGENT_SIGN_RESPONSE = 14;
const SSH_AGENT_RSA_SHA2_256 = 2;
const SSH_AGENT_RSA_SHA2_512 = 4;
const OPENSSH_MAGIC = Buffer.from('openssh-key-v1\0');

const CURVES: Record<string, { jwk: string; ssh: string; hash: string; bytes: number }> = {
  nistp256: { jwk: 'P-256', ssh: 'nistp256', hash: 'sha256', bytes: 32 },
  nistp384: { jwk: 'P-384', ssh: 'nistp384', hash: 'sha384', bytes: 48 },
  nistp521: { jwk: 'P-521', ssh: 'nistp521', hash: 'sha512', bytes: 66 },
};
const CURVE_BY_JWK = Object.fromEntries(Object.values(CURVES).map((c) => [c.jwk, c]));

export interface SshKey {
  /** The public key in SSH wire form: what the agent lists and a sign request names. */
  publicBlob: Buffer;
  comment: string;
  private: KeyObject;
}

function sshString(b: Buffer | string): Buffer {
  const body = typeof b === 'string' ? Buffer.from(b) : b;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length, 0);
  return Buffer.concat([length, body]);
}

function mpint(unsigned: Buffer): Buffer {
  let i = 0;
  while (i < unsigned.length && unsigned[i] === 0) i++;
  const digits = unsigned.subarray(i);
  return sshString(digits.length > 0 && digits[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), digits]) : digits);
}

const b64url = (b: Buffer): string => b.toString('base64url');
const fromB64url = (s: string | undefined): Buffer => Buffer.from(s ?? '', 'base64url');

/** Reads SSH wire fields off a buffer, failing with what was being read. */
class WireReader {
  private at = 0;
  constructor(
    private readonly bytes: Buffer,
    private readonly what: string,
  ) {}

  uint32(): number {
    if (this.at + 4 > this.bytes.length) throw new Error(`${this.what} is cut short`);
    const v = this.bytes.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }

  string(): Buffer {
    const length = this.uint32();
    if (this.at + length > this.bytes.length) throw new Error(`${this.what} is cut short`);
    const v = this.bytes.subarray(this.at, this.at + length);
    this.at += length;
    return v;
  }

  /** An mpint's magnitude (its sign byte dropped). */
  unsigned(): Buffer {
    const v = this.string();
    return v.length > 0 && v[0] === 0 ? v.subarray(1) : v;
  }
}

function bigOf(b: Buffer): bigint {
  return b.length === 0 ? 0n : BigInt(`0x${b.toString('hex')}`);
}

function bufferOf(n: bigint): Buffer {
  const hex = n.toString(16);
  return Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
}

function padTo(b: Buffer, size: number): Buffer {
  return b.length >= size ? b : Buffer.concat([Buffer.alloc(size - b.length), b]);
}

/** The JWK of the one key in an OpenSSH-format private key, and its comment. */
function openSshKey(text: string, file: string): { jwk: JsonWebKey; comment: string } {
  const body = Buffer.from(text.replace(/-----(BEGIN|END) OPENSSH PRIVATE KEY-----/g, '').replace(/\s+/g, ''), 'base64');
  if (!body.subarray(0, OPENSSH_MAGIC.length).equals(OPENSSH_MAGIC)) throw new Error(`${file} is not an OpenSSH private key`);
  const outer = new WireReader(body.subarray(OPENSSH_MAGIC.length), file);
  const cipher = outer.string().toString();
  outer.string(); // kdf name
  outer.string(); // kdf options
  if (cipher !== 'none') throw new Error(`${file} is protected by a passphrase (${cipher}); slipway build cannot ask for it: add the key to ssh-agent and forward the agent`);
  if (outer.uint32() !== 1) throw new Error(`${file} holds several keys; expected one`);
  outer.string(); // public key
  const inner = new WireReader(outer.string(), file);
  if (inner.uint32() !== inner.uint32()) throw new Error(`${file} is corrupt (its check numbers differ)`);
  const type = inner.string().toString();
  if (type === 'ssh-ed25519') {
    const pub = inner.string();
    const priv = inner.string();
    return { jwk: { kty: 'OKP', crv: 'Ed25519', x: b64url(pub), d: b64url(priv.subarray(0, 32)) }, comment: inner.string().toString() };
  }
  if (type === 'ssh-rsa') {
    const [n, e, d, iqmp, p, q] = [inner.unsigned(), inner.unsigned(), inner.unsigned(), inner.unsigned(), inner.unsigned(), inner.unsigned()];
    const dBig = bigOf(d);
    const jwk: JsonWebKey = { kty: 'RSA', n: b64url(n), e: b64url(e), d: b64url(d), p: b64url(p), q: b64url(q), dp: b64url(bufferOf(dBig % (bigOf(p) - 1n))), dq: b64url(bufferOf(dBig % (bigOf(q) - 1n))), qi: b64url(iqmp) };
    return { jwk, comment: inner.string().toString() };
  }
  const curve = CURVES[type.replace(/^ecdsa-sha2-/, '')];
  if (type.startsWith('ecdsa-sha2-') && curve) {
    inner.string(); // curve name again
    const q = inner.string();
    const d = inner.unsigned();
    const size = curve.bytes;
    const jwk: JsonWebKey = { kty: 'EC', crv: curve.jwk, x: b64url(q.subarray(1, 1 + size)), y: b64url(q.subarray(1 + size)), d: b64url(padTo(d, size)) };
    return { jwk, comment: inner.string().toString() };
  }
  throw new Error(`${file} is a ${type} key; slipway build signs with Ed25519, RSA and ECDSA (P-256/384/521) keys`);
}

function publicBlobOf(jwk: JsonWebKey): Buffer {
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return Buffer.concat([sshString('ssh-ed25519'), sshString(fromB64url(jwk.x))]);
  if (jwk.kty === 'RSA') return Buffer.concat([sshString('ssh-rsa'), mpint(fromB64url(jwk.e)), mpint(fromB64url(jwk.n))]);
  const curve = CURVE_BY_JWK[jwk.crv ?? ''];
  if (jwk.kty === 'EC' && curve) {
    const point = Buffer.concat([Buffer.from([4]), padTo(fromB64url(jwk.x), curve.bytes), padTo(fromB64url(jwk.y), curve.bytes)]);
    return Buffer.concat([sshString(`ecdsa-sha2-${curve.ssh}`), sshString(curve.ssh), sshString(point)]);
  }
  throw new Error(`unsupported key type ${jwk.kty}${jwk.crv ? ` ${jwk.crv}` : ''}`);
}

/** A private key file as the agent serves it; throws, saying why, for what it cannot use. */
export function sshKeyOf(text: string, file: string): SshKey {
  let jwk: JsonWebKey;
  let comment = file;
  if (text.includes('-----BEGIN OPENSSH PRIVATE KEY-----')) {
    ({ jwk, comment } = openSshKey(text, file));
  } else if (/-----BEGIN (RSA |EC )?PRIVATE KEY-----/.test(text)) {
    jwk = createPrivateKey({ key: text, format: 'pem' }).export({ format: 'jwk' });
  } else if (text.includes('ENCRYPTED')) {
    throw new Error(`${file} is protected by a passphrase; slipway build cannot ask for it: add the key to ssh-agent and forward the agent`);
  } else {
    throw new Error(`${file} is not a private key (expected OpenSSH or PEM format)`);
  }
  return { publicBlob: publicBlobOf(jwk), comment, private: createPrivateKey({ key: jwk, format: 'jwk' }) };
}

function signatureOf(key: SshKey, data: Buffer, flags: number): Buffer {
  const jwk = key.private.export({ format: 'jwk' });
  if (jwk.kty === 'OKP') return Buffer.concat([sshString('ssh-ed25519'), sshString(sign(null, data, key.private))]);
  if (jwk.kty === 'RSA') {
    const [name, hash] = flags & SSH_AGENT_RSA_SHA2_512 ? ['rsa-sha2-512', 'sha512'] : flags & SSH_AGENT_RSA_SHA2_256 ? ['rsa-sha2-256', 'sha256'] : ['ssh-rsa', 'sha1'];
    return Buffer.concat([sshString(name!), sshString(sign(hash!, data, key.private))]);
  }
  const curve = CURVE_BY_JWK[jwk.crv ?? '']!;
  const rs = sign(curve.hash, data, { key: key.private, dsaEncoding: 'ieee-p1363' });
  const half = rs.length / 2;
  return Buffer.concat([sshString(`ecdsa-sha2-${curve.ssh}`), sshString(Buffer.concat([mpint(rs.subarray(0, half)), mpint(rs.subarray(half))]))]);
}

function message(type: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length + 1, 0);
  head[4] = type;
  return Buffer.concat([head, body]);
}

/** The agent's answer to one whole request (length prefix included), as OpenSSH's agent answers it. */
export function answerAgentRequest(keys: readonly SshKey[], request: Buffer): Buffer {
  const type = request[4];
  if (type === SSH_AGENTC_REQUEST_IDENTITIES) {
    const count = Buffer.alloc(4);
    count.writeUInt32BE(keys.length, 0);
    return message(SSH_AGENT_IDENTITIES_ANSWER, Buffer.concat([count, ...keys.flatMap((k) => [sshString(k.publicBlob), sshString(k.comment)])]));
  }
  if (type === SSH_AGENTC_SIGN_REQUEST) {
    try {
      const reader = new WireReader(request.subarray(5), 'the sign request');
      const blob = reader.string();
      const data = reader.string();
      const flags = reader.uint32();
      const key = keys.find((k) => k.publicBlob.equals(blob));
      if (key) return message(SSH_AGENT_SIGN_RESPONSE, sshString(signatureOf(key, data, flags)));
    } catch {
      // A malformed request gets the agent's failure answer, as from OpenSSH.
    }
  }
  return message(SSH_AGENT_FAILURE);
}
