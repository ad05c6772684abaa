// A #cloud-config document of the three parts Slipway's VMs use: packages, files, and commands
// run once on the first boot. Written by hand rather than with a YAML library: strings are
// emitted as JSON (JSON's escapes are a subset of YAML's double-quoted ones) and file contents as
// literal blocks, which keeps the units and scripts readable in the EC2 console.

export interface CloudConfigFile {
  path: string;
  permissions: '0644' | '0755' | '0600';
  content: string;
}

export interface CloudConfig {
  /** First line of comment after #cloud-config. */
  comment: string;
  packages: readonly string[];
  files: readonly CloudConfigFile[];
  runcmd: ReadonlyArray<readonly string[]>;
}

function literalBlock(content: string, indent: string): string {
  return content
    .replace(/\n$/, '')
    .split('\n')
    .map((line) => (line === '' ? '' : indent + line))
    .join('\n');
}

export function cloudConfigDocument(config: CloudConfig): string {
  const lines = ['#cloud-config', `# ${config.comment}`, 'package_update: true', 'packages:', ...config.packages.map((p) => `  - ${p}`), 'write_files:'];
  for (const file of config.files) {
    lines.push(
      `  - path: ${JSON.stringify(file.path)}`,
      `    owner: ${JSON.stringify('root:root')}`,
      `    permissions: ${JSON.stringify(file.permissions)}`,
      '    content: |',
      literalBlock(file.content, '      '),
    );
  }
  lines.push('runcmd:', ...config.runcmd.map((command) => `  - ${JSON.stringify(command)}`));
  return `${lines.join('\n')}\n`;
}
