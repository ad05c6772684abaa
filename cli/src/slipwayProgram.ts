import { fileURLToPath } from 'node:url';

// How to run this same `slipway` program again, from a daemon or a Docker CLI plugin: the Node
// binary running now and the CLI's launcher script (which loads the TypeScript sources itself).
export interface SlipwayProgram {
  node: string;
  script: string;
}

export function slipwayProgram(): SlipwayProgram {
  return { node: process.execPath, script: fileURLToPath(new URL('../bin/slipway.mjs', import.meta.url)) };
}
