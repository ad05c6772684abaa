// The V8 flags every Slipway program is started with: `slipway` and the processes it starts again
// (daemon, worker, Docker CLI plugin), the gateway and the agent. Their launchers (the bin scripts'
// first lines, the systemd units, the Dockerfiles, `npm start`, the benches) all carry this list;
// e2e/test/nodeFlags.test.ts checks each of them against it.
//
// Why: relaying a tunnel allocates a Buffer per chunk, 65,536 per GB through each HTTP/2 hop, and
// many of them are still queued (in an HTTP/2 stream, behind an asynchronous socket write) when a
// young-generation collection runs, so they are promoted. V8 starts the old generation with a
// limit of a few megabytes and sets each next limit from a live heap of 10-15 MB, so that rate of
// promotion brought a full mark-compact every few megabytes of garbage: 7 to 72 of them per GiB
// through `slipway proxy` (the count varied from run to run), at up to 1.6 CPU-s per GB. With the
// old generation starting at 64 MB, a GiB through the proxy, the gateway and the agent needs none,
// and the limit stays there after the first one (measured over 8 GiB, and across idle spells).
// It is a threshold, not memory taken: a process uses no more memory until its heap grows.
//
// V8 reads it only at start-up (`v8.setFlagsFromString` is too late) and NODE_OPTIONS refuses it,
// so it has to be on node's command line.
export const NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];

/**
 * The first two lines of a launcher (the bin scripts, the CLI bundle): a file that is a POSIX
 * shell script and an ES module at once. Run as a program, `sh` reads it and starts the `node` on
 * PATH (as `#!/usr/bin/env node` would) with NODE_FLAGS on the same file; node skips the first
 * line and reads the second as a string followed by a comment. (`#!/usr/bin/env -S node FLAGS`
 * would say it in one line, but BusyBox's env has no -S.)
 */
export function launcherPreamble(): string {
  return `#!/bin/sh\n':' //; exec node ${NODE_FLAGS.join(' ')} "$0" "$@"\n`;
}
