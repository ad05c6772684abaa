// The CLI's version, as `slipway --version` and the Docker CLI plugin's metadata report it. A
// constant rather than a read of package.json, which a bundled CLI does not have beside it
// (cli/test/cliBundle.test.ts checks the two agree).
export const CLI_VERSION = '0.1.0';
