import { fileURLToPath } from 'node:url';
import path from 'node:path';

// .proto files live next to this package's src/, laid out by package name as protoc expects.
export const PROTO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const AGENT_CONTROL_PROTO = 'slipway/agent/v1/control.proto';

// Wire-compatible subset of BuildKit's control API (ListWorkers). BuildKit's Platform message is
// in package `pb`; it sits under moby/buildkit/pb/ rather than a top-level pb/ to keep it beside
// the rest of BuildKit's files.
export const BUILDKIT_CONTROL_PROTO = 'moby/buildkit/v1/control.proto';
export const BUILDKIT_CONTROL_SERVICE = 'moby.buildkit.v1.Control';
