// The `slipway build` program the build bench measures: the CLI bundled fresh from the current
// sources (as it would ship, see cli/tools/cliBundle.ts), so neither tsx's start-up nor a stale
// build is measured. The probe (buildProbe.ts) is bundled too: loading it through tsx would put
// tsx's loader back into the measured process.
import path from 'node:path';
import { build } from 'esbuild';
import { NODE_FLAGS } from '@slipway/cli';
import { bundleCli } from '@slipway/cli/bundle';

export interface BenchCli {
  /** Arguments for `node` before the CLI's own (the probe, the script). */
  nodeArgs(profileArgs: string[]): string[];
  /** What the bench's header says was run. */
  description: string;
}

export async function prepareBenchCli(dir: string, repoRoot: string, cliRepo: string): Promise<BenchCli> {
  const started = Date.now();
  const cli = await bundleCli(path.join(dir, 'cli'), cliRepo === '' ? undefined : path.join(path.resolve(cliRepo), 'cli'));
  const probe = path.join(dir, 'probe/buildProbe.mjs');
  await build({
    entryPoints: [path.join(repoRoot, 'loadtest/src/buildProbe.ts')],
    outfile: probe,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'warning',
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  return {
    nodeArgs: (profileArgs) => [...NODE_FLAGS, '--import', probe, ...profileArgs, cli.script],
    description: `the CLI bundled by esbuild from ${cliRepo === '' ? "the working tree's" : `${path.resolve(cliRepo)}'s`} sources when the bench started (cli/tools/cliBundle.ts, ${seconds} s), run by node ${process.version}`,
  };
}

/** The CLI run from its TypeScript sources through tsx, as the repository's tests run it. */
export function sourceBenchCli(repoRoot: string, cliRepo: string): BenchCli {
  const probe = path.join(repoRoot, 'loadtest/src/buildProbe.ts');
  const script = path.join(cliRepo === '' ? repoRoot : path.resolve(cliRepo), 'cli/bin/slipway.mjs');
  return {
    nodeArgs: (profileArgs) => [...NODE_FLAGS, '--import', 'tsx', '--import', probe, ...profileArgs, script],
    description: `${script}, the sources run through tsx (start-up includes transpiling), by node ${process.version}`,
  };
}
