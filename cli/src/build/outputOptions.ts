import type { CommandLine } from '../commandLine.js';
import { fields } from './csvFields.js';

// What the build delivers, from --output, --push and --load (buildx's meanings).

export type BuildOutput = { type: 'local'; dest: string } | { type: 'tar'; dest: string } | { type: 'none' };

function parseOutput(raw: string, problems: string[]): BuildOutput {
  // buildx: a value without '=' is a local folder.
  if (!raw.includes('=')) return raw === '-' ? (problems.push('--output - (a tarball on stdout) is not supported yet; give type=tar,dest=FILE'), { type: 'none' }) : { type: 'local', dest: raw };
  const f = fields(raw);
  const type = f.get('type') ?? 'local';
  const dest = f.get('dest');
  if (type === 'local' || type === 'tar') {
    if (!dest) {
      problems.push(`--output type=${type} needs dest=PATH; got '${raw}'`);
      return { type: 'none' };
    }
    const unknown = [...f.keys()].filter((k) => k !== 'type' && k !== 'dest');
    if (unknown.length > 0) problems.push(`--output type=${type}: unknown option(s) ${unknown.join(', ')}; expected dest`);
    return { type, dest };
  }
  problems.push(`--output type=${type} is not supported by slipway build yet; expected type=local or type=tar (push, image, docker and oci outputs are not implemented)`);
  return { type: 'none' };
}

/** The one output asked for by --output/-o, --push and --load, checked. */
export function outputOf(line: CommandLine, problems: string[]): BuildOutput {
  const outputs = [...(line.lists.get('--output') ?? []), ...(line.lists.get('-o') ?? [])];
  if (outputs.length > 1) problems.push(`only one --output is supported; got ${outputs.length}`);
  const output = outputs.length === 0 ? ({ type: 'none' } as const) : parseOutput(outputs[0]!, problems);
  for (const flag of ['--push', '--load']) if (line.switches.has(flag)) problems.push(`${flag} is not supported by slipway build yet; use --output type=local or type=tar`);
  for (const flag of ['--metadata-file', '--iidfile']) if (line.values.has(flag)) problems.push(`${flag} is not supported by slipway build yet`);
  return output;
}
