import { fileURLToPath } from 'node:url';
import { NODE_FLAGS } from './nodeFlags.js';

// How to run this same `slipway` program again, from a daemon or a Docker CLI plugin: the Node
// binary running now, the flags every Slipway program runs with, and the CLI's launcher script
// (which loads the TypeScript sources itself).
export interface SlipwayProgram {
  node: string;
  nodeFlags: readonly string[];
  script: string;
}

export function slipwayProgram(): SlipwayProgram {
  return { node: process.execPath, nodeFlags: NODE_FLAGS, script: fileURLToPath(new URL('../bin/slipway.mjs', import.meta.url)) };
}

/** The arguments to `node` that run this program with `args`. */
export function programArgs(program: SlipwayProgram, args: readonly string[]): string[] {
  return [...program.nodeFlags, program.script, ...args];
}
