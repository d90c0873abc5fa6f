export { startDemoServer } from './demo-server.ts';
export type { DemoIdentity, DemoServer, DemoServerOptions } from './demo-server.ts';
