#!/bin/sh
':' //; exec node --initial-old-space-size=64 "$0" "$@"
// The two lines above start node with the flags every Slipway program runs with (cli/src/nodeFlags.ts).
// Runs the gateway from its TypeScript source through tsx, so the repository needs no build step.
import { register } from 'tsx/esm/api';
register();
await import('../src/main.ts');
