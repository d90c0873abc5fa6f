/**
 * The server the MCP conformance suite (`conformance server`) expects: the tools, resources,
 * prompts, logging and completion its server scenarios call, built with the SDK's low-level
 * Server. One definition, two ways to reach it:
 *
 *   startConformanceHttpServer()       Streamable HTTP on a loopback port, one server per
 *                                      session, with an event store so a client can resume a
 *                                      stream the server closed (SEP-1699), and Host/Origin
 *                                      checks against DNS rebinding
 *   node conformance-server.ts stdio   the same server on stdin/stdout, for the stdio bridge
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server as HttpServer } from 'node:http';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport, type EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema, CompleteRequestSchema, ElicitResultSchema, GetPromptRequestSchema, ListPromptsRequestSchema,
  ListResourcesRequestSchema, ListResourceTemplatesRequestSchema, ListToolsRequestSchema, ReadResourceRequestSchema,
  SetLevelRequestSchema, SubscribeRequestSchema, UnsubscribeRequestSchema, CreateMessageResultSchema,
  type CallToolResult, type JSONRPCMessage, type RequestId, type ServerNotification, type ServerRequest,
} from '@modelcontextprotocol/sdk/types.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';

/** A 1×1 PNG and a minimal WAV file. */
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const WAV = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=';

interface Context {
  requestId: RequestId;
  progressToken?: string | number | undefined;
  sendNotification(notification: { method: string; params?: Record<string, unknown> }): Promise<void>;
  /**
   * A request to the client related to the tool call, so it travels on the call's own stream
   * (a request without relation goes to the GET stream, which the client may not have open yet).
   */
  sendRequest: RequestHandlerExtra<ServerRequest, ServerNotification>['sendRequest'];
  /** Closes the request's SSE stream (HTTP only), so the client resumes it. */
  closeStream?: (() => void) | undefined;
}

interface Tool {
  description: string;
  inputSchema: Record<string, unknown>;
  run(args: Record<string, unknown>, context: Context): Promise<CallToolResult> | CallToolResult;
}

const noArguments = { type: 'object', properties: {} };
const text = (value: string): CallToolResult => ({ content: [{ type: 'text', text: value }] });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function elicit(context: Context, message: string, requestedSchema: Record<string, unknown>): Promise<CallToolResult> {
  // The schemas here go beyond the SDK's type for requestedSchema (SEP-1330 enums, for example).
  const request = { method: 'elicitation/create', params: { mode: 'form', message, requestedSchema } } as ServerRequest;
  const result = await context.sendRequest(request, ElicitResultSchema);
  return text(`action=${result.action} content=${JSON.stringify(result.content ?? {})}`);
}

const tools: Record<string, Tool> = {
  test_simple_text: { description: 'Returns text', inputSchema: noArguments, run: () => text('This is a simple text response for testing.') },
  test_image_content: { description: 'Returns an image', inputSchema: noArguments, run: () => ({ content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] }) },
  test_audio_content: { description: 'Returns audio', inputSchema: noArguments, run: () => ({ content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] }) },
  test_embedded_resource: {
    description: 'Returns an embedded resource',
    inputSchema: noArguments,
    run: () => ({ content: [{ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }] }),
  },
  test_multiple_content_types: {
    description: 'Returns text, an image and a resource',
    inputSchema: noArguments,
    run: () => ({
      content: [
        { type: 'text', text: 'Multiple content types test:' },
        { type: 'image', data: PNG, mimeType: 'image/png' },
        { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: '{"test":"data","value":123}' } },
      ],
    }),
  },
  test_tool_with_logging: {
    description: 'Logs three messages while it runs',
    inputSchema: noArguments,
    async run(_args, context) {
      for (const data of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
        await context.sendNotification({ method: 'notifications/message', params: { level: 'info', data } });
        await sleep(20);
      }
      return text('Tool with logging executed successfully');
    },
  },
  test_tool_with_progress: {
    description: 'Reports progress three times',
    inputSchema: noArguments,
    async run(_args, context) {
      for (const progress of [0, 50, 100]) {
        if (context.progressToken !== undefined) {
          await context.sendNotification({ method: 'notifications/progress', params: { progressToken: context.progressToken, progress, total: 100 } });
        }
        await sleep(20);
      }
      return text(String(context.progressToken));
    },
  },
  test_error_handling: {
    description: 'Fails',
    inputSchema: noArguments,
    run: () => ({ isError: true, content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }] }),
  },
  test_reconnection: {
    description: 'Closes its SSE stream mid-call; the client resumes it to get the result (SEP-1699)',
    inputSchema: noArguments,
    async run(_args, context) {
      context.closeStream?.();
      await sleep(100);
      return text('Reconnection test completed successfully.');
    },
  },
  test_sampling: {
    description: 'Asks the client for an LLM completion',
    inputSchema: { type: 'object', properties: { prompt: { type: 'string' } }, required: ['prompt'] },
    async run(args, context) {
      const result = await context.sendRequest({
        method: 'sampling/createMessage',
        params: { messages: [{ role: 'user', content: { type: 'text', text: String(args.prompt) } }], maxTokens: 100 },
      }, CreateMessageResultSchema);
      return text(`LLM response: ${result.content.type === 'text' ? result.content.text : result.content.type}`);
    },
  },
  test_elicitation: {
    description: 'Asks the user for input',
    inputSchema: { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] },
    run: (args, context) => elicit(context, String(args.message), {
      type: 'object', properties: { response: { type: 'string', description: "User's response" } }, required: ['response'],
    }),
  },
  test_elicitation_sep1034_defaults: {
    description: 'Asks for input with a default for each primitive type (SEP-1034)',
    inputSchema: noArguments,
    run: (_args, context) => elicit(context, 'Please review the fields', {
      type: 'object',
      properties: {
        name: { type: 'string', description: 'User name', default: 'John Doe' },
        age: { type: 'integer', description: 'User age', default: 30 },
        score: { type: 'number', description: 'User score', default: 95.5 },
        status: { type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active' },
        verified: { type: 'boolean', description: 'Verification status', default: true },
      },
      required: [],
    }),
  },
  test_elicitation_sep1330_enums: {
    description: 'Asks for input with each kind of enum (SEP-1330)',
    inputSchema: noArguments,
    run: (_args, context) => elicit(context, 'Please choose', {
      type: 'object',
      properties: {
        untitledSingle: { type: 'string', enum: ['option1', 'option2', 'option3'] },
        titledSingle: { type: 'string', oneOf: [{ const: 'value1', title: 'First' }, { const: 'value2', title: 'Second' }, { const: 'value3', title: 'Third' }] },
        legacyEnum: { type: 'string', enum: ['opt1', 'opt2', 'opt3'], enumNames: ['Option One', 'Option Two', 'Option Three'] },
        untitledMulti: { type: 'array', minItems: 1, maxItems: 3, items: { type: 'string', enum: ['option1', 'option2', 'option3'] } },
        titledMulti: { type: 'array', minItems: 1, maxItems: 3, items: { anyOf: [{ const: 'value1', title: 'First' }, { const: 'value2', title: 'Second' }, { const: 'value3', title: 'Third' }] } },
      },
      required: [],
    }),
  },
  json_schema_2020_12_tool: {
    description: 'Has a JSON Schema 2020-12 input schema (SEP-1613)',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: { address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } } },
      properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
      additionalProperties: false,
    },
    run: (args) => text(`called with ${JSON.stringify(args)}`),
  },
};

const resources = [
  { uri: 'test://static-text', name: 'static-text', description: 'A static text resource', mimeType: 'text/plain', text: 'This is the content of the static text resource.' },
  { uri: 'test://static-binary', name: 'static-binary', description: 'A static binary resource', mimeType: 'image/png', blob: PNG },
  { uri: 'test://watched-resource', name: 'watched-resource', description: 'A resource one can subscribe to', mimeType: 'text/plain', text: 'Watched resource content' },
];

const prompts: Record<string, { description: string; arguments?: Array<{ name: string; required: boolean }>; messages(args: Record<string, string>): unknown[] }> = {
  test_simple_prompt: {
    description: 'A prompt without arguments',
    messages: () => [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }],
  },
  test_prompt_with_arguments: {
    description: 'A prompt with two arguments',
    arguments: [{ name: 'arg1', required: true }, { name: 'arg2', required: true }],
    messages: (args) => [{ role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${args.arg1}', arg2='${args.arg2}'` } }],
  },
  test_prompt_with_embedded_resource: {
    description: 'A prompt with an embedded resource',
    arguments: [{ name: 'resourceUri', required: true }],
    messages: (args) => [
      { role: 'user', content: { type: 'resource', resource: { uri: args.resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } } },
      { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
    ],
  },
  test_prompt_with_image: {
    description: 'A prompt with an image',
    messages: () => [
      { role: 'user', content: { type: 'image', data: PNG, mimeType: 'image/png' } },
      { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
    ],
  },
};

/** One MCP server (one per session over HTTP); `closeStream` closes a request's SSE stream. */
export function createConformanceServer(closeStream?: (requestId: RequestId) => void): Server {
  const server = new Server(
    { name: 'gatehouse-conformance-server', version: '1.0.0' },
    { capabilities: { tools: { listChanged: true }, resources: { subscribe: true, listChanged: true }, prompts: { listChanged: true }, logging: {}, completions: {} } },
  );
  const log = (data: string) => server.sendLoggingMessage({ level: 'info', data }).catch(() => undefined);

  server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: Object.entries(tools).map(([name, tool]) => ({ name, description: tool.description, inputSchema: tool.inputSchema as { type: 'object' } })),
  }));
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const tool = tools[request.params.name];
    if (!tool) return { isError: true, content: [{ type: 'text', text: `unknown tool ${request.params.name}` }] };
    return tool.run(request.params.arguments ?? {}, {
      sendRequest: extra.sendRequest,
      requestId: extra.requestId,
      progressToken: request.params._meta?.progressToken,
      sendNotification: (notification) => extra.sendNotification(notification as never),
      closeStream: closeStream ? () => closeStream(extra.requestId) : undefined,
    });
  });
  server.setRequestHandler(ListResourcesRequestSchema, () => ({ resources: resources.map(({ uri, name, description, mimeType }) => ({ uri, name, description, mimeType })) }));
  server.setRequestHandler(ListResourceTemplatesRequestSchema, () => ({
    resourceTemplates: [{ uriTemplate: 'test://template/{id}/data', name: 'template', description: 'Data by id', mimeType: 'application/json' }],
  }));
  server.setRequestHandler(ReadResourceRequestSchema, (request) => {
    const { uri } = request.params;
    const template = /^test:\/\/template\/([^/]+)\/data$/.exec(uri);
    if (template) return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify({ id: template[1], templateTest: true, data: `Data for ID: ${template[1]}` }) }] };
    const found = resources.find((resource) => resource.uri === uri);
    if (!found) throw new Error(`unknown resource ${uri}`);
    return { contents: [found.text !== undefined ? { uri, mimeType: found.mimeType, text: found.text } : { uri, mimeType: found.mimeType, blob: found.blob as string }] };
  });
  server.setRequestHandler(SubscribeRequestSchema, (request) => {
    void log(`Subscribed to resource: ${request.params.uri}`);
    return {};
  });
  server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
    void log(`Unsubscribed from resource: ${request.params.uri}`);
    return {};
  });
  server.setRequestHandler(ListPromptsRequestSchema, () => ({
    prompts: Object.entries(prompts).map(([name, prompt]) => ({ name, description: prompt.description, ...(prompt.arguments ? { arguments: prompt.arguments } : {}) })),
  }));
  server.setRequestHandler(GetPromptRequestSchema, (request) => {
    const prompt = prompts[request.params.name];
    if (!prompt) throw new Error(`unknown prompt ${request.params.name}`);
    return { messages: prompt.messages(request.params.arguments ?? {}) as never };
  });
  server.setRequestHandler(SetLevelRequestSchema, (request) => {
    void log(`Log level set to: ${request.params.level}`);
    return {};
  });
  server.setRequestHandler(CompleteRequestSchema, () => ({ completion: { values: [], total: 0, hasMore: false } }));
  return server;
}

/** Events kept for resumption (SEP-1699): stream id and a counter in each event id. */
function createEventStore(): EventStore {
  const events: Array<{ id: string; stream: string; message: JSONRPCMessage }> = [];
  let counter = 0;
  return {
    async storeEvent(stream, message) {
      const id = `${stream}::${String(++counter).padStart(10, '0')}`;
      events.push({ id, stream, message });
      return id;
    },
    async getStreamIdForEventId(eventId) {
      return eventId.split('::')[0];
    },
    async replayEventsAfter(lastEventId, { send }) {
      const stream = lastEventId.split('::')[0] as string;
      for (const event of events) {
        if (event.stream === stream && event.id > lastEventId && Object.keys(event.message).length > 0) await send(event.id, event.message);
      }
      return stream;
    },
  };
}

const LOOPBACK = /^(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$/;

/** The server over Streamable HTTP at `http://127.0.0.1:<port>/mcp`. */
export async function startConformanceHttpServer(): Promise<{ url: string; server: HttpServer; close(): Promise<void> }> {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const http = createServer(async (req, res) => {
    // DNS rebinding (MCP basic/transports, security warning): a local server checks Host and Origin.
    const origin = req.headers.origin;
    if (!LOOPBACK.test(req.headers.host ?? '') || (origin !== undefined && !LOOPBACK.test(origin.replace(/^https?:\/\//, '')))) {
      res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: 'forbidden host or origin' } }));
      return;
    }
    const sessionId = req.headers['mcp-session-id'];
    const existing = typeof sessionId === 'string' ? sessions.get(sessionId) : undefined;
    if (existing) return existing.handleRequest(req, res);
    if (sessionId !== undefined || req.method !== 'POST') {
      res.writeHead(sessionId === undefined ? 400 : 404, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: 'no such session' } }));
      return;
    }
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore: createEventStore(),
      retryInterval: 500,
      onsessioninitialized: (id) => void sessions.set(id, transport),
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await createConformanceServer((requestId) => transport.closeSSEStream(requestId)).connect(transport);
    await transport.handleRequest(req, res);
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const port = (http.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    server: http,
    async close() {
      await Promise.all([...sessions.values()].map((transport) => transport.close()));
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    },
  };
}

if (process.argv[2] === 'stdio') {
  await createConformanceServer().connect(new StdioServerTransport());
}
