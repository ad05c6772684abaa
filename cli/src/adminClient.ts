import { CliError } from './cliError.js';
import { callGatewayApi, gatewayAnswerOf, type ApiCarrier, type ApiCall } from './gatewayApi.js';

export interface ProjectRecord {
  name: string;
  createdAtMs: number;
  isolateUntrusted: boolean;
}

export interface TokenRecord {
  id: string;
  project: string;
  subject: string;
  scopes: string[];
  description: string;
  createdAtMs: number;
  expiresAtMs: number;
  revokedAtMs?: number;
}

export interface IssuedToken {
  id: string;
  token: string;
  project: string;
  scopes: string[];
  expiresAt: string;
}

export interface TrustPolicyRecord {
  id: string;
  project: string;
  issuer: string;
  audience: string;
  conditions: Record<string, string>;
  untrustedWhen?: Record<string, string>;
  scopes?: string[];
  tokenTtlSec?: number;
  allowAnySubject?: boolean;
}

// For the admin API a wire code means what it says about the thing asked for, not about a tunnel.
const ADMIN_CODES: ApiCall['codes'] = { BAD_REQUEST: 'INVALID_REQUEST', NOT_FOUND: 'NOT_FOUND', CONFLICT: 'CONFLICT' };

// The gateway's admin API (gateway/src/adminApi.ts) with an admin token. Errors carry the
// gateway's own message: it names every problem of a request, in its terms.
export class AdminClient {
  constructor(
    private readonly api: ApiCarrier,
    private readonly adminToken: string,
    private readonly timeoutMs: number,
  ) {}

  createProject(name: string, isolateUntrusted: boolean): Promise<ProjectRecord> {
    return this.call('POST', '/v1/admin/projects', { name, isolateUntrusted });
  }

  async listProjects(): Promise<ProjectRecord[]> {
    return (await this.call<{ projects: ProjectRecord[] }>('GET', '/v1/admin/projects')).projects;
  }

  deleteProject(name: string): Promise<void> {
    return this.call('DELETE', `/v1/admin/projects/${segment(name)}`);
  }

  createToken(project: string, request: { scopes?: string[]; ttlSec?: number; description?: string }): Promise<IssuedToken> {
    return this.call('POST', `/v1/admin/projects/${segment(project)}/tokens`, request);
  }

  async listTokens(project: string): Promise<TokenRecord[]> {
    return (await this.call<{ tokens: TokenRecord[] }>('GET', `/v1/admin/projects/${segment(project)}/tokens`)).tokens;
  }

  revokeToken(id: string): Promise<void> {
    return this.call('DELETE', `/v1/admin/tokens/${segment(id)}`);
  }

  addTrustPolicy(project: string, policy: object): Promise<TrustPolicyRecord> {
    return this.call('POST', `/v1/admin/projects/${segment(project)}/trust`, policy);
  }

  async listTrustPolicies(project: string): Promise<TrustPolicyRecord[]> {
    return (await this.call<{ policies: TrustPolicyRecord[] }>('GET', `/v1/admin/projects/${segment(project)}/trust`)).policies;
  }

  removeTrustPolicy(project: string, id: string): Promise<void> {
    return this.call('DELETE', `/v1/admin/projects/${segment(project)}/trust/${segment(id)}`);
  }

  private async call<T>(method: ApiCall['method'], path: string, body?: unknown): Promise<T> {
    try {
      return await callGatewayApi<T>(this.api, { method, path, token: this.adminToken, body, timeoutMs: this.timeoutMs, codes: ADMIN_CODES });
    } catch (err) {
      throw reworded(err);
    }
  }
}

// Names go into the path as one segment each: a name with a slash must not reach another route.
function segment(value: string): string {
  return encodeURIComponent(value);
}

function reworded(err: unknown): unknown {
  const answer = gatewayAnswerOf(err);
  if (!(err instanceof CliError) || answer === undefined || answer.wireCode === undefined) return err;
  if (answer.status === 404 && /^no route/.test(answer.message)) {
    return new CliError('NOT_FOUND', `this gateway does not serve the admin API (${answer.message}); it runs without an identity store`);
  }
  if (answer.wireCode === 'UNAUTHENTICATED') {
    return new CliError('UNAUTHENTICATED', `the gateway did not accept the admin token: ${answer.message}`);
  }
  if (answer.wireCode === 'INTERNAL') return err;
  return new CliError(err.code, answer.message);
}
