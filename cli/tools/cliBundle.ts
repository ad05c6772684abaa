import { chmodSync, cpSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { launcherPreamble } from '../src/nodeFlags.js';

// The CLI as it would ship: one ES module bundled by esbuild from src/main.ts (dependencies
// included), beside a copy of the .proto files it loads at run time. Run from source through
// tsx, the CLI spends most of a second transpiling and resolving some 150 modules before it does
// anything; the bundle starts in a fraction of that.
//
// Layout of the output folder, which the code's own path arithmetic relies on:
//   bin/slipway.mjs   the bundle. slipwayProgram() names `../bin/slipway.mjs` relative to the
//                     running module, which from the bundle is the bundle itself.
//   moby/, slipway/   the .proto trees. @slipway/proto's PROTO_ROOT is the folder above the
//                     running module's (proto/src/.. in the repository), which from the bundle
//                     is this folder.

const CLI_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The .proto trees of @slipway/proto, laid out by package name (see proto/src/protoFiles.ts). */
const PROTO_TREES = ['moby', 'slipway'];
/** Modules the bundle reaches through import.meta.url, each accounted for by the layout above. */
const EXPECTED_IMPORT_META_URLS = 2;

export interface CliBundle {
  /** The folder holding everything (pass it to rm when done). */
  dir: string;
  /** The program to run with node. */
  script: string;
}

export const DEFAULT_BUNDLE_DIR = path.join(CLI_ROOT, 'dist/bundle');

/**
 * Bundles the CLI from the current sources into `dir` (emptied first). `cliRoot` bundles another
 * checkout's cli/ instead (a worktree of an earlier commit, to compare); its dependencies resolve
 * from that checkout's node_modules.
 */
export async function bundleCli(dir: string = DEFAULT_BUNDLE_DIR, cliRoot: string = CLI_ROOT): Promise<CliBundle> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const script = path.join(dir, 'bin/slipway.mjs');
  await build({
    entryPoints: [path.join(cliRoot, 'src/main.ts')],
    outfile: script,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // ws loads these native add-ons if they are installed and does without them otherwise.
    external: ['bufferutil', 'utf-8-validate'],
    // CommonJS dependencies (protobufjs, ws) call require() for Node's built-ins, which an ES
    // module does not have.
    // The launcher's first lines start node with the flags Slipway runs with (nodeFlags.ts).
    banner: { js: `${launcherPreamble()}import { createRequire as __slipwayCreateRequire } from 'node:module';\nconst require = __slipwayCreateRequire(import.meta.url);` },
    logLevel: 'warning',
    legalComments: 'none',
  });
  // A new module that finds a file next to itself would find nothing next to the bundle: say so
  // here rather than in a user's build.
  const occurrences = readFileSync(script, 'utf8').split('import.meta.url').length - 1;
  const uses = occurrences - 1; // the banner's own
  if (uses !== EXPECTED_IMPORT_META_URLS) {
    throw new Error(
      `the CLI bundle uses import.meta.url in ${uses} places, expected ${EXPECTED_IMPORT_META_URLS} (PROTO_ROOT, slipwayProgram): ` +
        `check that whatever the new one locates is in the bundle's folder (cli/tools/cliBundle.ts), then update the count`,
    );
  }
  // Run as a program, its first lines start node with Slipway's flags.
  chmodSync(script, 0o755);
  for (const tree of PROTO_TREES) cpSync(path.join(cliRoot, '../proto', tree), path.join(dir, tree), { recursive: true, filter: (src) => !src.endsWith('.ts') });
  return { dir, script };
}
