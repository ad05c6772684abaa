import type { AdminRequest } from './config.js';
import type { AdminClient, ProjectRecord, TokenRecord, TrustPolicyRecord } from './adminClient.js';
import { textTable } from './textTable.js';

export interface CommandOutput {
  /** Results: what a script captures. */
  stdout(text: string): void;
  /** Everything said to the person running it. */
  stderr(text: string): void;
}

// Runs one admin command and prints its result: data on stdout (a table, or JSON with --json),
// what happened on stderr. `tokens create` prints the token alone on stdout, so that
// TOKEN=$(slipway tokens create web) captures exactly the token.
export async function runAdminCommand(request: AdminRequest, client: AdminClient, json: boolean, out: CommandOutput, now: number = Date.now()): Promise<void> {
  const data = (value: unknown): void => out.stdout(`${JSON.stringify(value, null, 2)}\n`);
  switch (request.command) {
    case 'projects create': {
      const project = await client.createProject(request.name, request.isolateUntrusted);
      if (json) data(project);
      out.stderr(`Created project ${project.name}${project.isolateUntrusted ? ' (untrusted CI identities build apart from its cache)' : ''}.\n`);
      return;
    }
    case 'projects list': {
      const projects = await client.listProjects();
      if (json) return data({ projects });
      if (projects.length === 0) return out.stderr('No projects yet: slipway projects create NAME\n');
      out.stdout(`${projectTable(projects)}\n`);
      return;
    }
    case 'projects delete':
      await client.deleteProject(request.name);
      out.stderr(`Deleted project ${request.name}; its tokens are revoked and its trust policies gone.\n`);
      return;
    case 'tokens create': {
      const issued = await client.createToken(request.project, {
        ...(request.scopes !== undefined ? { scopes: request.scopes } : {}),
        ...(request.ttlSec !== undefined ? { ttlSec: request.ttlSec } : {}),
        ...(request.description !== undefined ? { description: request.description } : {}),
      });
      if (json) data(issued);
      else out.stdout(`${issued.token}\n`);
      out.stderr(`Created token ${issued.id} for project ${issued.project} (scopes ${issued.scopes.join(' ')}; expires ${issued.expiresAt}). It is shown only this once.\n`);
      return;
    }
    case 'tokens list': {
      const tokens = await client.listTokens(request.project);
      if (json) return data({ tokens });
      if (tokens.length === 0) return out.stderr(`Project ${request.project} has no tokens: slipway tokens create ${request.project}\n`);
      out.stdout(`${tokenTable(tokens, now)}\n`);
      return;
    }
    case 'tokens revoke':
      await client.revokeToken(request.id);
      out.stderr(`Revoked token ${request.id}.\n`);
      return;
    case 'trust add': {
      const policy = await client.addTrustPolicy(request.project, request.policy);
      if (json) data(policy);
      out.stderr(`Added trust policy ${policy.id} to project ${request.project}.\n`);
      return;
    }
    case 'trust list': {
      const policies = await client.listTrustPolicies(request.project);
      if (json) return data({ policies });
      if (policies.length === 0) return out.stderr(`Project ${request.project} trusts no CI identity: slipway trust add ${request.project} --issuer URL --audience AUD --condition CLAIM=PATTERN\n`);
      out.stdout(`${trustTable(policies)}\n`);
      return;
    }
    case 'trust remove':
      await client.removeTrustPolicy(request.project, request.id);
      out.stderr(`Removed trust policy ${request.id} from project ${request.project}.\n`);
      return;
  }
}

function time(ms: number | undefined): string {
  return ms === undefined || !Number.isFinite(ms) ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function projectTable(projects: ProjectRecord[]): string {
  return textTable(
    ['NAME', 'ISOLATE UNTRUSTED', 'CREATED'],
    projects.map((p) => [p.name, p.isolateUntrusted ? 'yes' : 'no', time(p.createdAtMs)]),
  );
}

function tokenTable(tokens: TokenRecord[], now: number): string {
  const state = (t: TokenRecord): string => (t.revokedAtMs !== undefined && t.revokedAtMs !== null ? 'revoked' : t.expiresAtMs <= now ? 'expired' : 'active');
  return textTable(
    ['ID', 'STATE', 'SCOPES', 'CREATED', 'EXPIRES', 'DESCRIPTION'],
    tokens.map((t) => [t.id, state(t), t.scopes.join(' '), time(t.createdAtMs), time(t.expiresAtMs), t.description || '-']),
  );
}

function pairs(record: Record<string, string> | undefined): string {
  const entries = Object.entries(record ?? {});
  return entries.length === 0 ? '-' : entries.map(([k, v]) => `${k}=${v}`).join(' ');
}

function trustTable(policies: TrustPolicyRecord[]): string {
  return textTable(
    ['ID', 'ISSUER', 'AUDIENCE', 'CONDITIONS', 'UNTRUSTED WHEN'],
    policies.map((p) => [p.id, p.issuer, p.audience, `${pairs(p.conditions)}${p.allowAnySubject ? ' (any subject)' : ''}`, pairs(p.untrustedWhen)]),
  );
}
