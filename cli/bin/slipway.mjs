#!/bin/sh
':' //; exec node --initial-old-space-size=64 "$0" "$@"
// The two lines above start node with the flags every Slipway program runs with (cli/src/nodeFlags.ts).
// Runs the CLI from its TypeScript source through tsx, so the repository needs no build step.
// Transpiling costs most of a second at every start: the CLI as shipped (and as bench:build
// measures it) is the bundle `npm run build:cli` makes (cli/tools/cliBundle.ts).
import { register } from 'tsx/esm/api';
register();
await import('../src/main.ts');
