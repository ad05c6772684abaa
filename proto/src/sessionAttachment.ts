// A tunnel stream may carry a BuildKit session instead of BuildKit's API: the client names the
// session in the `slipway-session` header and serves the session's gRPC on the stream, and the
// agent attaches it to Docker Engine's `/session` endpoint (an HTTP/1.1 upgrade after which
// dockerd speaks HTTP/2 as the client), which registers it where dockerd's BuildKit finds it by id.
//
// Why not Control.Session, as with any BuildKit: there the session's HTTP/2 rides inside the
// messages of a gRPC call, so every byte of a build context crosses two HTTP/2 layers in the CLI
// and two in dockerd, and waits on two sets of flow-control windows. On its own stream it crosses
// one, as with `docker build`.
//
// The agent writes these values into an HTTP/1.1 request: they are validated on both hops, and
// nothing that could end a header line or smuggle another one gets through.

export interface SessionAttachment {
  /** The session id a Solve names (X-Docker-Expose-Session-Uuid). */
  id: string;
  name: string;
  /** BuildKit reuses what an earlier session of the same key uploaded. */
  sharedKey: string;
  /** The gRPC methods the client serves on the session, e.g. /moby.filesync.v1.FileSync/DiffCopy. */
  methods: string[];
}

export const SESSION_ATTACHMENT_MAX_BYTES = 4096;
const MAX_METHODS = 64;
const ID = /^[A-Za-z0-9_.-]{1,128}$/;
const TEXT = /^[\x20-\x7e]{0,256}$/;
const METHOD = /^\/[A-Za-z0-9_.]{1,128}\/[A-Za-z0-9_]{1,128}$/;

/** Parses the header's JSON; throws an Error saying what was expected and what arrived. */
export function parseSessionAttachment(text: string): SessionAttachment {
  if (text.length > SESSION_ATTACHMENT_MAX_BYTES) {
    throw new Error(`a session attachment is at most ${SESSION_ATTACHMENT_MAX_BYTES} bytes of JSON; got ${text.length}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`a session attachment is JSON {id, name, sharedKey, methods}; got ${JSON.stringify(text.slice(0, 64))}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error('a session attachment is a JSON object {id, name, sharedKey, methods}');
  }
  const { id, name, sharedKey, methods } = value as Record<string, unknown>;
  if (typeof id !== 'string' || !ID.test(id)) throw new Error(`session id must be 1-128 of A-Z a-z 0-9 _ . -; got ${describe(id)}`);
  if (typeof name !== 'string' || !TEXT.test(name)) throw new Error(`session name must be at most 256 printable ASCII characters; got ${describe(name)}`);
  if (typeof sharedKey !== 'string' || !TEXT.test(sharedKey)) {
    throw new Error(`session sharedKey must be at most 256 printable ASCII characters; got ${describe(sharedKey)}`);
  }
  if (!Array.isArray(methods) || methods.length === 0 || methods.length > MAX_METHODS) {
    throw new Error(`session methods must be a list of 1-${MAX_METHODS} gRPC method paths; got ${describe(methods)}`);
  }
  for (const method of methods) {
    if (typeof method !== 'string' || !METHOD.test(method)) throw new Error(`session method must look like /package.Service/Method; got ${describe(method)}`);
  }
  return { id, name, sharedKey, methods: methods as string[] };
}

export function formatSessionAttachment(session: SessionAttachment): string {
  return JSON.stringify({ id: session.id, name: session.name, sharedKey: session.sharedKey, methods: session.methods });
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return `a list of ${value.length}`;
  return JSON.stringify(value)?.slice(0, 80) ?? String(value);
}
