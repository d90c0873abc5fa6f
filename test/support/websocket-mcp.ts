/**
 * MCP over WebSocket for tests: a server-side transport for the SDK's `Server` (the SDK ships
 * only the client side, WebSocketClientTransport), a WebSocket server that records each
 * upgrade request, and a way to give the SDK's client transport an Authorization header.
 */
import type { IncomingMessage } from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { JSONRPCMessageSchema, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

/** One WebSocket connection as an MCP transport: one JSON-RPC message per text frame. */
export class WebSocketServerTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  readonly socket: WebSocket;

  constructor(socket: WebSocket) {
    this.socket = socket;
  }

  async start(): Promise<void> {
    this.socket.on('message', (data) => {
      try {
        this.onmessage?.(JSONRPCMessageSchema.parse(JSON.parse(String(data))));
      } catch (error) {
        this.onerror?.(error as Error);
      }
    });
    this.socket.on('close', () => this.onclose?.());
  }

  async send(message: JSONRPCMessage): Promise<void> {
    this.socket.send(JSON.stringify(message));
  }

  async close(): Promise<void> {
    this.socket.close();
  }
}

export interface RecordingWebSocketServer {
  url: string;
  /** Every upgrade request the server accepted, in order. */
  upgrades: IncomingMessage[];
  /** Every connection, in order. */
  sockets: WebSocket[];
  close(): Promise<void>;
}

/** A WebSocket server on a free loopback port; `onConnection` runs for each client. It picks `mcp` when offered. */
export async function startWebSocketServer(onConnection: (socket: WebSocket, request: IncomingMessage) => void): Promise<RecordingWebSocketServer> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (offered) => (offered.has('mcp') ? 'mcp' : false) });
  const upgrades: IncomingMessage[] = [];
  const sockets: WebSocket[] = [];
  server.on('connection', (socket, request) => {
    upgrades.push(request);
    sockets.push(socket);
    onConnection(socket, request);
  });
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `ws://127.0.0.1:${port}`,
    upgrades,
    sockets,
    close: () => new Promise<void>((resolve) => {
      for (const socket of server.clients) socket.terminate();
      server.close(() => resolve());
    }),
  };
}

/**
 * Runs `body` while the global WebSocket (which the SDK's WebSocketClientTransport constructs
 * with the URL and its `mcp` subprotocol alone) sends `headers` in its opening handshake, as
 * Node's WebSocket client allows; browsers cannot, which is why the gateway needs the header.
 */
export async function withWebSocketHeaders<T>(headers: Record<string, string>, body: () => Promise<T>): Promise<T> {
  const Original = globalThis.WebSocket;
  class WithHeaders extends Original {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, { protocols, headers } as unknown as string[]);
    }
  }
  globalThis.WebSocket = WithHeaders as typeof WebSocket & typeof Original;
  try {
    return await body();
  } finally {
    globalThis.WebSocket = Original;
  }
}
