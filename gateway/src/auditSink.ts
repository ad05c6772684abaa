import fs from 'node:fs';

// Where audit lines go: appended to a file (mode 0600) when configured, else standard error. A
// failing file is reported once on standard error and the lines follow it there, rather than
// being lost silently.
export function auditSink(path: string | undefined, stderr: NodeJS.WritableStream): (line: string) => void {
  if (path === undefined) return (line) => void stderr.write(line);
  const file = fs.createWriteStream(path, { flags: 'a', mode: 0o600 });
  let failed = false;
  file.on('error', (err) => {
    if (!failed) stderr.write(`slipway-gateway: audit log ${path} failed (${err.message}); writing audit lines to standard error\n`);
    failed = true;
  });
  return (line) => void (failed ? stderr.write(line) : file.write(line));
}
