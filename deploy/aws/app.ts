// The CDK app: `npx cdk synth` / `npx cdk deploy` in deploy/aws (cdk.json points here). Its
// settings come from the context key `slipway` (SlipwayStackProps as JSON; cdk.json or -c), so
// the stack is the same wherever it is synthesized, and nothing is looked up in an account.
import { App } from 'aws-cdk-lib';
import { SlipwayStack, type SlipwayStackProps } from './slipwayStack.js';

const app = new App();
const settings = app.node.tryGetContext('slipway') as SlipwayStackProps | string | undefined;
if (settings === undefined) {
  throw new Error("context 'slipway' is missing: set it in deploy/aws/cdk.json or pass -c slipway='{...}' (see docs/OPERATIONS.md)");
}
const props = typeof settings === 'string' ? (JSON.parse(settings) as SlipwayStackProps) : settings;
new SlipwayStack(app, (app.node.tryGetContext('stackName') as string | undefined) ?? 'Slipway', props);
app.synth();
