import type { BuildOutput } from './outputOptions.js';
import type { PlatformResponse, PushedIndex } from './buildMetadata.js';

// The lines `slipway build` ends with: per platform, the image digest the builder reported and
// where the output went; then the index pushed for several platforms.

export interface DeliveredResult extends PlatformResponse {
  delivered: string | undefined;
}

export function resultReport(output: BuildOutput, results: DeliveredResult[], index: PushedIndex | undefined): string {
  const several = results.length > 1;
  const lines: string[] = [];
  for (const r of results) {
    const digest = r.exporterResponse['containerimage.digest'];
    const where = r.delivered ?? (output.type === 'docker' && 'load' in output ? `not loaded (Docker here runs ${output.load.platform})` : undefined);
    lines.push(`${several ? `[${r.platform}] ` : ''}built${digest ? ` ${digest}` : ''}${where ? ` → ${where}` : ''}`);
  }
  if (index) lines.push(`pushed ${index.names.join(', ')}: image index ${index.digest} (${results.map((r) => r.platform).join(', ')})`);
  return `${lines.join('\n')}\n`;
}

/** The platform whose image --load put into Docker, if any. */
export function loadedPlatformOf(output: BuildOutput): PlatformResponse['platform'] | undefined {
  return output.type === 'docker' && 'load' in output ? output.load.platform : undefined;
}
