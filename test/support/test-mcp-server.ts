/**
 * A real MCP server (the SDK's McpServer) for transport tests, whichever transport carries it:
 * tools that answer, stream progress, send a notification on their own, ask the client
 * (sampling: a server-to-client request), and report the request headers they received.
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

function text(value: string): CallToolResult {
  return { content: [{ type: 'text', text: value }] };
}

export function createTestMcpServer(): McpServer {
  const mcp = new McpServer({ name: 'transport-test', version: '1.0.0' }, { capabilities: { logging: {} } });

  mcp.registerTool('add', { inputSchema: { a: z.number(), b: z.number() } }, ({ a, b }) => text(String(a + b)));

  mcp.registerTool('progress', { inputSchema: { steps: z.number().int().min(1).max(20) } }, async ({ steps }, extra) => {
    const progressToken = extra._meta?.progressToken;
    for (let step = 1; step <= steps; step++) {
      if (progressToken !== undefined) {
        await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress: step, total: steps } });
      }
    }
    return text(`done after ${steps}`);
  });

  // A notification the server sends on its own, not tied to the request (no relatedRequestId).
  mcp.registerTool('notify', { inputSchema: { message: z.string() } }, async ({ message }) => {
    await mcp.server.sendLoggingMessage({ level: 'info', logger: 'test', data: message });
    return text('sent');
  });

  // Sampling: a request from the server to the client, answered while the tool call waits.
  mcp.registerTool('ask', { inputSchema: { question: z.string() } }, async ({ question }) => {
    const answer = await mcp.server.createMessage({
      messages: [{ role: 'user', content: { type: 'text', text: question } }],
      maxTokens: 10,
    });
    return text(answer.content.type === 'text' ? `the client said: ${answer.content.text}` : 'no text');
  });

  mcp.registerTool('headers', {}, (extra) => {
    const headers = extra.requestInfo?.headers ?? {};
    const pick = (name: string) => headers[name] ?? null;
    return text(JSON.stringify({
      authorization: pick('authorization'),
      email: pick('x-user-email'),
      protocol: pick('mcp-protocol-version'),
      session: pick('mcp-session-id'),
    }));
  });

  return mcp;
}
