/*
 * The configuration schema, split by section into src/config/schema/ (primitives, access,
 * identity-providers, services, store, clients; index.ts puts them together). This module keeps
 * the import path the rest of the code uses.
 */
export * from './schema/index.ts';
