// The V8 flags every Slipway program is started with: `slipway` and the processes it starts again
// (daemon, worker, Docker CLI plugin), the gateway and the agent. Their launchers (the bin scripts'
// first lines, the systemd units, the Dockerfiles, `npm start`, the benches) all carry this list;
// e2e/test/nodeFlags.test.ts checks each of them against it.
//
// Why: relaying a tunnel allocates Buffers fast (Node's HTTP/2, and the JavaScript stream wrapper
// under the CLI's session, make one per chunk: 65,536 per GB per hop), and enough of them outlive a
// young-generation collection to be promoted. V8 starts the old generation with a limit of a few
// megabytes and sets each next limit from a live heap of 10-15 MB, so that promotion brought full
// mark-compacts: 7 to 72 per GiB through `slipway proxy` (the count varied from run to run), about
// 1.5 CPU-s per GB in the runs with the most, and 14 to 32 per GiB in the agent. With the
// old generation starting at 64 MB, 2 GiB through the proxy and the agent needed none (the gateway
// one, during its start-up), and the limit stays up after a full collection: one in 8 GiB through
// the proxy, none in 4 GiB with idle spells between. It is a threshold, not memory reserved (an idle
// process's RSS is the same); what it costs is that a busy process may carry up to about 64 MB of
// old garbage between full collections instead of 10-15 MB.
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
