// `npm run build:cli [-- OUT_DIR]`: bundles the CLI (see cliBundle.ts) into cli/dist/bundle or OUT_DIR.
import path from 'node:path';
import { bundleCli } from './cliBundle.js';

const out = process.argv[2];
const bundle = await bundleCli(out === undefined ? undefined : path.resolve(out));
process.stdout.write(`${bundle.script}\n`);
