/**
 * stdio MCP servers run by the gateway (`services.<name>.command`): the reference server
 * `@modelcontextprotocol/server-everything` reached with the MCP SDK client over Streamable
 * HTTP (tools, resources, prompts, sampling, elicitation, roots, progress, logging), and a small
 * test server (test/support/stdio-test-server.ts) for isolation, limits, idle timeout, crashes,
 * the environment, session hijacking and cleanup. Processes are checked in /proc.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema, LoggingMessageNotificationSchema,
  ToolListChangedNotificationSchema, type CallToolResult,
} from '@modelcontextprotocol/sdk/types.js';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { redeem, runCodeFlow } from '../support/oauth-flow.ts';

const node = process.execPath;
const everything = fileURLToPath(new URL('../../node_modules/@modelcontextprotocol/server-everything/dist/index.js', import.meta.url));
const fixture = fileURLToPath(new URL('../support/stdio-test-server.ts', import.meta.url));

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';

function services() {
  return {
    everything: {
      command: [node, everything, 'stdio'],
      env: { GREETING: 'hello {{user.email}}', STORE: '/srv/mcp/{{user.id_hash}}' },
    },
    fixture: {
      command: [node, fixture, '--user={{user.email}}'],
      env: { LABEL: 'for {{ user.name }}', GROUPS: '{{user.groups}}' },
      max_processes_per_user: 2,
    },
    peruser: { command: [node, fixture], isolation: 'user' },
    shared: { command: [node, fixture], isolation: 'shared', max_processes: 1 },
    single: { command: [node, fixture], max_processes: 1 },
    idle: { command: [node, fixture], idle_timeout_seconds: 1 },
    noisy: { command: [node, fixture, '--noise'] },
    missing: { command: ['/nonexistent/mcp-server'] },
  };
}

let gateway: TestGateway;
const tokens = new Map<string, string>();
const clients: Client[] = [];

async function tokenFor(target: TestGateway, service: string, email: string): Promise<string> {
  const key = `${target.origin} ${service} ${email}`;
  const known = tokens.get(key);
  if (known) return known;
  const flow = await runCodeFlow(target, { user: { email, name: email.split('@')[0], groups: 'eng,ops' }, params: { resource: `${target.origin}/${service}/mcp` } });
  const response = await redeem(target, flow);
  if (response.status !== 200) throw new Error(`token for ${service}: ${JSON.stringify(response.body)}`);
  tokens.set(key, String(response.body.access_token));
  return String(response.body.access_token);
}

async function connect(service: string, email = ALICE, options: { target?: TestGateway; client?: Client } = {}) {
  const target = options.target ?? gateway;
  const transport = new StreamableHTTPClientTransport(new URL(`${target.origin}/${service}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${await tokenFor(target, service, email)}` } },
  });
  const client = options.client ?? new Client({ name: 'stdio-bridge-test', version: '1' });
  await client.connect(transport);
  clients.push(client);
  return { client, transport, sessionId: transport.sessionId as string };
}

function textOf(result: unknown): string {
  return (result as CallToolResult).content.map((part) => (part.type === 'text' ? part.text : '')).join('');
}

async function whoami(client: Client, names: string[] = []): Promise<{ pid: number; argv: string[]; env: Record<string, string | null> }> {
  return JSON.parse(textOf(await client.callTool({ name: 'whoami', arguments: { names } })));
}

async function until(check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A process is alive when /proc has it and it is not a zombie. */
function alive(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return false;
  try {
    return readFileSync(stat, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Children of this process that exited and were never reaped. */
function zombieChildren(): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const [state, ppid] = (readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1] ?? '').split(' ');
      if (state === 'Z' && Number(ppid) === process.pid) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Processes whose command line mentions `marker`. */
function processesRunning(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(marker)) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

function mcpPost(service: string, token: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${gateway.origin}/${service}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify(body),
  });
}

const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'by-hand', version: '0' } } };

beforeAll(async () => {
  process.env.GATEHOUSE_TEST_SECRET = 'must-not-reach-servers';
  gateway = await startTestGateway({
    identity_providers: [{ id: 'dev', type: 'dev' }],
    access: { allow: { users: ['*'] } },
    services: services(),
  });
});

afterAll(async () => {
  await Promise.all(clients.map((client) => client.close().catch(() => undefined)));
  await gateway?.close();
  delete process.env.GATEHOUSE_TEST_SECRET;
});

describe('server-everything through the gateway', () => {
  it('lists and calls tools, reads resources, gets prompts, and answers sampling, elicitation and roots', async () => {
    const client = new Client({ name: 'everything-test', version: '1' }, { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } });
    const sampled: string[] = [];
    const logs: string[] = [];
    let listChanged = 0;
    let rootsAsked = 0;
    client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
      const first = request.params.messages[0]?.content;
      sampled.push(first && 'text' in first ? String(first.text) : '');
      return { model: 'test-model', role: 'assistant', content: { type: 'text', text: 'forty-two' } };
    });
    client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { name: 'Alice Example', check: true } }));
    client.setRequestHandler(ListRootsRequestSchema, async () => {
      rootsAsked++;
      return { roots: [{ uri: 'file:///home/alice', name: 'home' }] };
    });
    client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => void logs.push(String(notification.params.data)));
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => void listChanged++);
    await connect('everything', ALICE, { client });

    // After initialization the server adds the tools that need client capabilities (and says
    // so), then asks for the client's roots, with no client request pending.
    await until(() => listChanged > 0 && logs.some((line) => line.includes('1 root(s) received')));
    expect(rootsAsked).toBe(1);
    const tools = (await client.listTools()).tools.map((tool) => tool.name);
    expect(tools).toEqual(expect.arrayContaining(['echo', 'get-sum', 'get-env', 'trigger-sampling-request', 'trigger-elicitation-request']));

    expect(textOf(await client.callTool({ name: 'echo', arguments: { message: 'through the gateway' } }))).toBe('Echo: through the gateway');
    expect(textOf(await client.callTool({ name: 'get-sum', arguments: { a: 19, b: 23 } }))).toContain('42');

    const sampling = textOf(await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'the answer?' } }));
    expect(sampled).toEqual(['Resource trigger-sampling-request context: the answer?']);
    expect(sampling).toContain('forty-two');
    const elicited = textOf(await client.callTool({ name: 'trigger-elicitation-request', arguments: {} }));
    expect(elicited).toContain('Alice Example');

    const progress: number[] = [];
    const long = await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } }, undefined, {
      onprogress: (update) => void progress.push(update.progress),
    });
    expect(textOf(long)).toContain('Steps: 3');
    expect(progress).toEqual([1, 2, 3]);

    const resource = await client.readResource({ uri: 'demo://resource/dynamic/text/7' });
    expect(resource.contents[0]?.uri).toBe('demo://resource/dynamic/text/7');
    expect((resource.contents[0] as { text?: string }).text).toContain('7');
    await client.subscribeResource({ uri: 'demo://resource/dynamic/text/7' });
    await until(() => logs.some((line) => line.includes('Received Subscribe Resource request for URI: demo://resource/dynamic/text/7')));

    const prompt = await client.getPrompt({ name: 'args-prompt', arguments: { city: 'Lisbon' } });
    expect(prompt.messages[0]?.content).toEqual({ type: 'text', text: "What's weather in Lisbon?" });
    expect((await client.listPrompts()).prompts.map((item) => item.name)).toContain('simple-prompt');
  });

  it('gives the server a minimal environment with the user filled in, never the gateway\'s own', async () => {
    const { client } = await connect('everything');
    const env = JSON.parse(textOf(await client.callTool({ name: 'get-env', arguments: {} }))) as Record<string, string>;
    expect(env.GREETING).toBe(`hello ${ALICE}`);
    expect(env.STORE).toMatch(/^\/srv\/mcp\/[0-9a-f]{32}$/);
    expect(env.PATH).toBe(process.env.PATH);
    expect(env.GATEHOUSE_TEST_SECRET).toBeUndefined();
    expect(Object.keys(env).filter((name) => !['GREETING', 'STORE', 'PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'LANGUAGE', 'LC_ALL', 'LC_CTYPE', 'TZ', 'TMPDIR', 'TERM'].includes(name))).toEqual([]);
  });
});

describe('isolation', () => {
  it('session: each MCP session has its own process, with argv and env templated for its user', async () => {
    const first = await connect('fixture');
    const second = await connect('fixture');
    const a = await whoami(first.client, ['LABEL', 'GROUPS', 'GATEHOUSE_TEST_SECRET']);
    const b = await whoami(second.client);
    expect(a.pid).not.toBe(b.pid);
    expect(a.argv).toEqual([`--user=${ALICE}`]);
    expect(a.env).toEqual({ LABEL: 'for alice', GROUPS: 'eng,ops', GATEHOUSE_TEST_SECRET: null });
    await first.transport.terminateSession();
    await until(() => !alive(a.pid));
    expect(alive(b.pid)).toBe(true);
  });

  it('user: one process for all of a user\'s sessions, another for another user', async () => {
    const alice1 = await whoami((await connect('peruser')).client);
    const alice2 = await whoami((await connect('peruser')).client);
    const bob = await whoami((await connect('peruser', BOB)).client);
    expect(alice2.pid).toBe(alice1.pid);
    expect(bob.pid).not.toBe(alice1.pid);
  });

  it('shared: one process for everyone', async () => {
    const alice = await whoami((await connect('shared')).client);
    const bob = await whoami((await connect('shared', BOB)).client);
    expect(bob.pid).toBe(alice.pid);
  });
});

describe('limits and lifecycle', () => {
  it('at max_processes_per_user, replaces an unattended session of the user, else answers 503 with a JSON-RPC error', async () => {
    const token = await tokenFor(gateway, 'fixture', 'carol@example.com');
    const sessionIds: string[] = [];
    const streams: AbortController[] = [];
    for (let index = 0; index < 2; index++) {
      const response = await mcpPost('fixture', token, initialize);
      expect(response.status).toBe(200);
      sessionIds.push(response.headers.get('mcp-session-id') as string);
      await response.text();
      // A client that is still there holds its GET stream open.
      const controller = new AbortController();
      const stream = await fetch(`${gateway.origin}/fixture/mcp`, {
        headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', 'mcp-session-id': sessionIds[index] as string, 'mcp-protocol-version': '2025-06-18' },
        signal: controller.signal,
      });
      expect(stream.status).toBe(200);
      streams.push(controller);
    }
    const refused = await mcpPost('fixture', token, initialize);
    expect(refused.status).toBe(503);
    expect(await refused.json()).toEqual({
      jsonrpc: '2.0', id: 1,
      error: { code: -32012, message: 'you already have 2 sessions of fixture in use, its limit per user; end one and try again' },
    });
    // Another user is not affected.
    expect((await connect('fixture', 'dave@example.com')).sessionId).toBeTruthy();

    // The first client goes away without DELETE: the next session takes its place.
    streams[0]?.abort();
    let replacing = await mcpPost('fixture', token, initialize);
    // The gateway notices the closed stream a moment later; until then the answer is still 503.
    for (let tries = 0; replacing.status === 503 && tries < 100; tries++) {
      await replacing.body?.cancel();
      await new Promise((resolve) => setTimeout(resolve, 20));
      replacing = await mcpPost('fixture', token, initialize);
    }
    expect(replacing.status).toBe(200);
    expect(gateway.logs.filter((line) => line.event === 'stdio.session_replaced')).toHaveLength(1);
    await replacing.body?.cancel();
    const gone = await mcpPost('fixture', token, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, { 'mcp-session-id': sessionIds[0] as string, 'mcp-protocol-version': '2025-06-18' });
    expect(gone.status).toBe(404);
    streams[1]?.abort();
  });

  it('refuses a session past max_processes with 503, and never ends another user\'s session to make room', async () => {
    const alice = await mcpPost('single', await tokenFor(gateway, 'single', ALICE), initialize);
    expect(alice.status).toBe(200);
    await alice.text();
    const bob = await mcpPost('single', await tokenFor(gateway, 'single', BOB), initialize);
    expect(bob.status).toBe(503);
    expect(await bob.json()).toEqual({ jsonrpc: '2.0', id: 1, error: { code: -32012, message: 'single is running its maximum of 1 server processes; try again later' } });
  });

  it('ends a session after its idle timeout: its process stops and its id is no longer known', async () => {
    const { client, sessionId } = await connect('idle');
    const { pid } = await whoami(client);
    await until(() => !alive(pid), 4000);
    const response = await mcpPost('idle', await tokenFor(gateway, 'idle', ALICE), { jsonrpc: '2.0', id: 5, method: 'tools/list' }, { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' });
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ id: 5, error: { code: -32004, message: expect.stringContaining('initialize a new session') } });
  });

  it('reports a crash to the pending request and logs the stderr tail', async () => {
    const { client } = await connect('fixture', 'erin@example.com');
    const { pid } = await whoami(client);
    await expect(client.callTool({ name: 'crash', arguments: {} })).rejects.toThrow(/stopped unexpectedly/);
    expect(alive(pid)).toBe(false);
    const exit = gateway.logs.find((line) => line.event === 'stdio.exit' && line.pid === pid);
    expect(exit).toMatchObject({ level: 50, code: 3, service: 'fixture' });
    expect(String(exit?.stderr)).toContain('fatal: the test server crashes on purpose');
    // The session is gone with its process: the client is told to initialize again.
    await expect(client.listTools()).rejects.toThrow(/404|Session not found|initialize a new session/);
  });

  it('answers a clear error when the program cannot be started', async () => {
    const response = await mcpPost('missing', await tokenFor(gateway, 'missing', ALICE), initialize);
    const text = await response.text();
    expect(text).toContain('"code":-32010');
    expect(gateway.logs.some((line) => line.event === 'stdio.exit' && line.service === 'missing' && String(line.err).includes('ENOENT'))).toBe(true);
  });

  it('skips lines on stdout that are not JSON-RPC, and says so once in the log', async () => {
    const { client } = await connect('noisy');
    expect((await whoami(client)).argv).toEqual(['--noise']);
    expect(gateway.logs.filter((line) => line.event === 'stdio.stdout_noise')).toHaveLength(1);
  });
});

describe('sessions belong to their user', () => {
  it('refuses another user presenting a session id (404, as for an unknown one)', async () => {
    const alice = await connect('fixture');
    const bobToken = await tokenFor(gateway, 'fixture', BOB);
    const hijack = await mcpPost('fixture', bobToken, { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'whoami', arguments: {} } }, {
      'mcp-session-id': alice.sessionId, 'mcp-protocol-version': '2025-06-18',
    });
    expect(hijack.status).toBe(404);
    expect(await hijack.json()).toMatchObject({ id: 9, error: { code: -32004 } });
    const unknown = await mcpPost('fixture', bobToken, { jsonrpc: '2.0', id: 9, method: 'tools/list' }, { 'mcp-session-id': 'no-such-session', 'mcp-protocol-version': '2025-06-18' });
    expect(unknown.status).toBe(404);
    expect(gateway.logs.some((line) => line.event === 'session.foreign' && line.service === 'fixture')).toBe(true);
    // Alice's session is untouched.
    expect((await whoami(alice.client)).argv).toEqual([`--user=${ALICE}`]);
  });
});

describe('shutdown', () => {
  it('leaves no process behind, helpers of the servers included', async () => {
    const own = await startTestGateway({
      identity_providers: [{ id: 'dev', type: 'dev' }],
      access: { allow: { users: ['*'] } },
      services: { fixture: { command: [node, fixture, '--marker=shutdown-test'] }, peruser: { command: [node, fixture, '--marker=shutdown-test'], isolation: 'user' } },
    });
    const first = await connect('fixture', ALICE, { target: own });
    const second = await connect('peruser', BOB, { target: own });
    const pids = [(await whoami(first.client)).pid, (await whoami(second.client)).pid];
    const helper = Number(textOf(await first.client.callTool({ name: 'helper', arguments: {} })));
    expect([...pids, helper].every(alive)).toBe(true);
    expect(processesRunning('--marker=shutdown-test').sort()).toEqual([...pids].sort());

    await own.close();
    expect([...pids, helper].filter(alive)).toEqual([]);
    expect(processesRunning('--marker=shutdown-test')).toEqual([]);
    expect(zombieChildren()).toEqual([]);
  });
});
