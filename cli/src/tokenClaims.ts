/**
 * A JWT's claims, read without checking its signature: only for telling the person what a token
 * says (its project, when it expires). The gateway is the one that decides whether it is valid.
 */
export function unverifiedClaims(token: string): Record<string, unknown> {
  try {
    const payload: unknown = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'));
    return typeof payload === 'object' && payload !== null && !Array.isArray(payload) ? (payload as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
