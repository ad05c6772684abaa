import { methodCodec } from './buildkitProtos.js';
import type { RegistryCredentials } from './registryCredentials.js';
import type { SessionServer } from './sessionServer.js';

// BuildKit's Auth service on the client's session, as buildx serves it: when a pull or push
// meets a registry's 401, the builder asks the client for that registry's credentials and then
// speaks Basic or fetches the bearer token itself.
//
// Only Credentials is served. BuildKit first asks GetTokenAuthority, and takes Unimplemented
// (what the session server answers for a method it does not serve) as "this client signs no
// tokens": it then asks Credentials and fetches tokens itself; FetchToken and
// VerifyTokenAuthority are only asked of a client that gave an authority. That holds for the
// BuildKit of Docker Engine 20.10 (0.8) and of Engine 26 (0.13) alike.

interface CredentialsRequest {
  Host: string;
}

interface CredentialsResponse {
  Username: string;
  Secret: string;
}

/** Registers Auth.Credentials on a build's session, answering from the user's Docker credentials. */
export function serveRegistryAuth(server: SessionServer, credentials: RegistryCredentials): void {
  const codec = methodCodec<CredentialsRequest, CredentialsResponse>('moby.filesync.v1.Auth', 'Credentials');
  server.handle(codec.path, async (call) => {
    let host: string | undefined;
    for await (const raw of call.messages()) host = codec.decodeRequest(raw).Host;
    if (host === undefined) throw new Error('Auth.Credentials: expected a request naming the registry host, got none');
    const credential = await credentials.forHost(host);
    // No credentials is an empty answer, not an error: BuildKit then goes on anonymously.
    const answer: CredentialsResponse =
      credential === undefined
        ? { Username: '', Secret: '' }
        : credential.kind === 'basic'
          ? { Username: credential.username, Secret: credential.password }
          : // An identity token goes with an empty username: BuildKit then exchanges it for a bearer token.
            { Username: '', Secret: credential.token };
    await call.send(codec.encodeResponse(answer));
  });
}
