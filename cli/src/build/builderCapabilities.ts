import type { ClientHttp2Session } from 'node:http2';
import type { Platform } from '@slipway/proto';
import { CliError } from '../cliError.js';
import { methodCodec } from './buildkitProtos.js';
import { GrpcClientCall } from './grpcClientCall.js';
import type { BuildOutput } from './outputOptions.js';

// What a builder's BuildKit can export, found out before the solve so that an output it cannot
// make is refused up front, by name, instead of failing after the build.
//
// Docker Engine's embedded BuildKit with the classic (graph driver) image store runs one worker
// whose ID is "moby" and whose labels lack a snapshotter: it has only the local, tar and moby
// exporters (moby stores into that Engine's own images, it does not push). With the containerd
// image store, and in buildkitd, the worker is BuildKit's own, labelled with its snapshotter,
// and every exporter is there. buildx tells Docker's two stores apart by the same label.
// An Engine (either store) also has the moby exporter, which names images as Docker does
// (docker.io/library/app:1 for app:1), so an image kept in the Engine goes there, as with
// buildx's docker driver; dockerd labels its containerd worker with its host-gateway-ip.

const SNAPSHOTTER_LABEL = 'org.mobyproject.buildkit.worker.snapshotter';
const ENGINE_LABEL_PREFIX = 'org.mobyproject.buildkit.worker.moby.';

export interface BuilderCapabilities {
  /** BuildKit's exporters this builder has. */
  exporters: string[];
  /** The builder, for messages. */
  description: string;
}

export interface WorkerRecord {
  ID: string;
  Labels: Record<string, string>;
}

export async function probeBuilder(connection: ClientHttp2Session): Promise<BuilderCapabilities> {
  const codec = methodCodec<{ filter: string[] }, { record: WorkerRecord[] }>('moby.buildkit.v1.Control', 'ListWorkers');
  const answer = await GrpcClientCall.unary(connection, codec, { filter: [] });
  return capabilitiesOf(answer.record);
}

/** What the workers ListWorkers reported say the builder can export. */
export function capabilitiesOf(workers: WorkerRecord[]): BuilderCapabilities {
  const classic = workers.length > 0 && workers.every((w) => w.ID === 'moby' || w.Labels[SNAPSHOTTER_LABEL] === undefined);
  if (classic) return { exporters: ['local', 'tar', 'moby'], description: "Docker Engine's BuildKit with the classic image store (worker moby)" };
  const snapshotter = workers.map((w) => w.Labels[SNAPSHOTTER_LABEL]).find((s) => s !== undefined);
  const engine = workers.some((w) => Object.keys(w.Labels).some((k) => k.startsWith(ENGINE_LABEL_PREFIX)));
  return engine
    ? { exporters: ['local', 'tar', 'image', 'docker', 'oci', 'moby'], description: `Docker Engine's BuildKit with the containerd image store (snapshotter ${snapshotter ?? 'unknown'})` }
    : { exporters: ['local', 'tar', 'image', 'docker', 'oci'], description: `BuildKit (snapshotter ${snapshotter ?? 'unknown'})` };
}

/** BuildKit's exporter for an output on this builder: `image` without push goes to `moby` in a Docker Engine, as buildx does. */
export function exporterNameFor(output: BuildOutput, capabilities: BuilderCapabilities): string {
  if (output.type === 'none') return '';
  if (output.type === 'image' && !output.push && capabilities.exporters.includes('moby')) return 'moby';
  return output.type;
}

/** Refuses, naming the missing exporter, an output this builder cannot make. */
export function checkBuilderCan(output: BuildOutput, capabilities: BuilderCapabilities, platform: Platform): void {
  const exporter = exporterNameFor(output, capabilities);
  if (exporter === '' || capabilities.exporters.includes(exporter)) return;
  const asked =
    output.type === 'image' && output.push
      ? '--push (type=image,push=true)'
      : output.type === 'docker' && 'load' in output
        ? '--load (type=docker)'
        : `--output type=${output.type}`;
  const why =
    output.type === 'image'
      ? `it has no "image" exporter, so it cannot push (its "moby" exporter only stores images in that Docker Engine)`
      : `it has no "${exporter}" exporter`;
  throw new CliError(
    'CONFIG_INVALID',
    `the ${platform} builder cannot do ${asked}: ${capabilities.description}: ${why}; its exporters are ${capabilities.exporters.join(', ')}. ` +
      'Use type=local or type=tar there, or a builder with the containerd image store or buildkitd.',
  );
}
