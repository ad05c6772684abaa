// Prints a builder's cloud-init user data for the options in a JSON file (BuilderUserDataOptions),
// e.g. to launch a builder by hand or to look at what the CDK app puts in a launch template:
//
//   npx tsx deploy/builder/renderUserData.ts builder.json > user-data.yaml
import fs from 'node:fs';
import { renderBuilderUserData, type BuilderUserDataOptions } from './builderUserData.js';

const [optionsPath] = process.argv.slice(2);
if (optionsPath === undefined || optionsPath === '--help') {
  process.stderr.write('usage: renderUserData.ts OPTIONS.json   (fields: see BuilderUserDataOptions in deploy/builder/builderUserData.ts)\n');
  process.exit(optionsPath === undefined ? 2 : 0);
}
try {
  const options = JSON.parse(fs.readFileSync(optionsPath, 'utf8')) as BuilderUserDataOptions;
  process.stdout.write(renderBuilderUserData(options));
} catch (err) {
  process.stderr.write(`renderUserData: ${(err as Error).message}\n`);
  process.exit(2);
}
