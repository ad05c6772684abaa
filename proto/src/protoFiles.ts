import { fileURLToPath } from 'node:url';
import path from 'node:path';

// .proto files live next to this package's src/, laid out by package name as protoc expects.
export const PROTO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const AGENT_CONTROL_PROTO = 'slipway/agent/v1/control.proto';
