export * from './tunnelProtocol.js';
export * from './protoFiles.js';
